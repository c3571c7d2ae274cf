// Package etcdkv is a kv.Engine on an etcd cluster:
//
//	etcd://host:port[,host:port...]/prefix[?timeout=10s&max-txn-ops=128&max-request-bytes=1572864]
//
// Every key lives under the prefix, so pools can share a cluster. A
// read-write transaction is optimistic: it reads at one revision, buffers
// its writes, and commits them in one etcd Txn guarded by a comparison
// per key it read (its mod revision then; 0 for a key it found absent),
// per key a scan returned (which catches deletes in the range) and per
// range it scanned (no key there modified or created since the
// revision). A false guard is ErrConflict, which kv.Update retries.
//
// etcd bounds a request: --max-txn-ops (128 by default) comparisons and
// as many writes, and --max-request-bytes (1.5 MiB). Limits() reports
// them (the URL overrides the defaults for a cluster configured
// otherwise), and a larger transaction fails with kv.ErrTooBig before it
// is sent. It is never split, which would break its atomicity.
package etcdkv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dhdfs/dhdfs/cluster/kv"
)

func init() {
	kv.Register("etcd", func(u *url.URL) (kv.Engine, error) {
		c, err := ParseURL(u)
		if err != nil {
			return nil, err
		}
		return Open(c)
	})
}

// Config says where the pool's keys are and what the cluster allows.
type Config struct {
	Endpoints []string
	// Prefix is put before every key ("/dhdfs/pool" from the URL's path).
	Prefix string
	// Timeout bounds each request, so a cluster that went away is an
	// error rather than a hang.
	Timeout time.Duration
	// MaxTxnOps and MaxRequestBytes are the cluster's --max-txn-ops and
	// --max-request-bytes.
	MaxTxnOps       int
	MaxRequestBytes int
}

// Defaults of etcd's own flags.
const (
	DefaultMaxTxnOps       = 128
	DefaultMaxRequestBytes = 3 << 19 // 1.5 MiB
	DefaultTimeout         = 10 * time.Second
)

// ParseURL reads an etcd:// URL.
func ParseURL(u *url.URL) (Config, error) {
	c := Config{Prefix: u.Path, Timeout: DefaultTimeout, MaxTxnOps: DefaultMaxTxnOps, MaxRequestBytes: DefaultMaxRequestBytes}
	for _, h := range strings.Split(u.Host, ",") {
		if h == "" {
			return c, fmt.Errorf("%s: no etcd endpoint (want etcd://host:port[,host:port...]/prefix)", u.Redacted())
		}
		c.Endpoints = append(c.Endpoints, "http://"+h)
	}
	if c.Prefix == "" || c.Prefix == "/" {
		return c, fmt.Errorf("%s: no key prefix (want etcd://host:port/prefix, e.g. /dhdfs/pool1)", u.Redacted())
	}
	if !strings.HasSuffix(c.Prefix, "/") {
		c.Prefix += "/"
	}
	q := u.Query()
	for name, dst := range map[string]*int{"max-txn-ops": &c.MaxTxnOps, "max-request-bytes": &c.MaxRequestBytes} {
		if s := q.Get(name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 16 {
				return c, fmt.Errorf("%s: %s=%q is not a number of at least 16", u.Redacted(), name, s)
			}
			*dst = n
		}
	}
	if s := q.Get("timeout"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return c, fmt.Errorf("%s: timeout=%q is not a positive duration", u.Redacted(), s)
		}
		c.Timeout = d
	}
	return c, nil
}

// Engine is the etcd engine.
type Engine struct {
	cli    *clientv3.Client
	prefix string
	cfg    Config
	limits kv.Limits
	closed atomic.Bool
}

// keyBytes bounds a key so that a full set of range comparisons (two keys
// each) stays well inside a request next to MaxTxnBytes of writes.
const keyBytes = 1024

// Open connects to the cluster c names and checks that it answers.
func Open(c Config) (*Engine, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints, DialTimeout: c.Timeout})
	if err != nil {
		return nil, fmt.Errorf("connect to etcd at %s: %w", strings.Join(c.Endpoints, ","), err)
	}
	e := &Engine{cli: cli, prefix: c.Prefix, cfg: c, limits: kv.Limits{
		MaxTxnKeys: c.MaxTxnOps,
		// The rest of a request: the comparisons' keys and protobuf framing.
		MaxTxnBytes:   c.MaxRequestBytes * 2 / 3,
		MaxTxnReads:   c.MaxTxnOps,
		MaxKeyBytes:   keyBytes,
		MaxValueBytes: c.MaxRequestBytes * 2 / 3,
	}}
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	if _, err := cli.Get(ctx, c.Prefix, clientv3.WithCountOnly()); err != nil {
		cli.Close()
		return nil, fmt.Errorf("etcd at %s does not answer: %w", strings.Join(c.Endpoints, ","), err)
	}
	return e, nil
}

func (e *Engine) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, e.cfg.Timeout)
}

func (e *Engine) mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, rpctypes.ErrTooManyOps), errors.Is(err, rpctypes.ErrRequestTooLarge), errors.Is(err, rpctypes.ErrGRPCRequestTooLarge):
		return fmt.Errorf("%w: %w", kv.ErrTooBig, err)
	case e.closed.Load():
		return fmt.Errorf("%w: %w", kv.ErrClosed, err)
	}
	return fmt.Errorf("etcd: %w", err)
}

// reader reads at one revision, taken by its first read.
type reader struct {
	e   *Engine
	ctx context.Context
	rev int64
}

func (r *reader) get(key []byte, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	if r.rev != 0 {
		opts = append(opts, clientv3.WithRev(r.rev))
	}
	ctx, cancel := r.e.call(r.ctx)
	defer cancel()
	resp, err := r.e.cli.Get(ctx, r.e.prefix+string(key), opts...)
	if err != nil {
		return nil, r.e.mapErr(err)
	}
	if r.rev == 0 {
		r.rev = resp.Header.Revision
	}
	return resp, nil
}

func (r *reader) getKV(key []byte) ([]byte, int64, error) {
	resp, err := r.get(key)
	if err != nil {
		return nil, 0, err
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, fmt.Errorf("%q: %w", key, kv.ErrNotFound)
	}
	return resp.Kvs[0].Value, resp.Kvs[0].ModRevision, nil
}

func (r *reader) Get(key []byte) ([]byte, error) {
	v, _, err := r.getKV(key)
	return v, err
}

// rangeEnd is the etcd range end of [start, end) under the prefix.
func (r *reader) rangeEnd(end []byte) string {
	if end == nil {
		return clientv3.GetPrefixRangeEnd(r.e.prefix)
	}
	return r.e.prefix + string(end)
}

// page returns up to n keys of [start, end) at the reader's revision.
func (r *reader) page(start, end []byte, n int, keysOnly bool) ([]*kvPair, error) {
	opts := []clientv3.OpOption{clientv3.WithRange(r.rangeEnd(end)), clientv3.WithLimit(int64(n)),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)}
	if keysOnly {
		opts = append(opts, clientv3.WithKeysOnly())
	}
	resp, err := r.get(start, opts...)
	if err != nil {
		return nil, err
	}
	out := make([]*kvPair, len(resp.Kvs))
	for i, p := range resp.Kvs {
		v := p.Value
		if keysOnly {
			v = nil
		}
		out[i] = &kvPair{key: p.Key[len(r.e.prefix):], value: v, modRev: p.ModRevision}
	}
	return out, nil
}

type kvPair struct {
	key, value []byte
	modRev     int64
}

const pageSize = 512

func (r *reader) Scan(start, end []byte, opts kv.ScanOptions, fn func(k, v []byte) error) error {
	seen := 0
	for {
		n := pageSize
		if opts.Limit > 0 {
			n = min(n, opts.Limit-seen)
		}
		page, err := r.page(start, end, n, opts.KeysOnly)
		if err != nil {
			return err
		}
		for _, p := range page {
			if err := fn(p.key, p.value); err != nil {
				return err
			}
		}
		seen += len(page)
		if len(page) < n || (opts.Limit > 0 && seen >= opts.Limit) {
			return nil
		}
		start = append(bytes.Clone(page[len(page)-1].key), 0)
	}
}

// View implements kv.Engine.
func (e *Engine) View(ctx context.Context, fn func(kv.Reader) error) error {
	if e.closed.Load() {
		return kv.ErrClosed
	}
	return fn(&reader{e: e, ctx: ctx})
}

// txn is an optimistic read-write transaction.
type txn struct {
	reader
	writes map[string][]byte // nil value: delete (absent from the map: untouched)
	reads  map[string]int64  // key → mod revision it was read at (0: absent)
	ranges [][2][]byte       // scanned [start, end); end nil: to the prefix's end
	nbytes int
	err    error
}

func (t *txn) fail(err error) error {
	if t.err == nil {
		t.err = err
	}
	return err
}

func (t *txn) checkReads() error {
	if n := len(t.reads) + len(t.ranges); n > t.e.limits.MaxTxnReads {
		return t.fail(fmt.Errorf("a transaction that read %d keys and ranges; etcd checks at most %d (--max-txn-ops): %w",
			n, t.e.limits.MaxTxnReads, kv.ErrTooBig))
	}
	return nil
}

func (t *txn) Get(key []byte) ([]byte, error) {
	if t.err != nil {
		return nil, t.err
	}
	if v, ok := t.writes[string(key)]; ok {
		if v == nil {
			return nil, fmt.Errorf("%q: %w", key, kv.ErrNotFound)
		}
		return bytes.Clone(v), nil
	}
	v, rev, err := t.getKV(key)
	if err != nil && !errors.Is(err, kv.ErrNotFound) {
		return nil, err
	}
	t.reads[string(key)] = rev
	if err := t.checkReads(); err != nil {
		return nil, err
	}
	return v, err
}

func (t *txn) Scan(start, end []byte, opts kv.ScanOptions, fn func(k, v []byte) error) error {
	if t.err != nil {
		return t.err
	}
	// Every key a scan returns is compared at commit, so a scan reads at
	// most what the comparisons allow (one more, to know it is too much).
	budget := t.e.limits.MaxTxnReads - len(t.reads) - len(t.ranges) - 1
	stored, err := t.page(start, end, max(budget+1, 1), opts.KeysOnly)
	if err != nil {
		return err
	}
	complete := len(stored) <= budget
	// Merge the transaction's own writes in [start, end).
	var mine []string
	for k := range t.writes {
		if k >= string(start) && (end == nil || k < string(end)) {
			mine = append(mine, k)
		}
	}
	sort.Strings(mine)
	type entry struct {
		key, value []byte
		stored     *kvPair
	}
	var merged []entry
	i := 0
	for _, p := range stored {
		for i < len(mine) && mine[i] < string(p.key) {
			if v := t.writes[mine[i]]; v != nil {
				merged = append(merged, entry{key: []byte(mine[i]), value: v})
			}
			i++
		}
		if i < len(mine) && mine[i] == string(p.key) {
			if v := t.writes[mine[i]]; v != nil {
				merged = append(merged, entry{key: p.key, value: v, stored: p})
			} else {
				merged = append(merged, entry{stored: p}) // deleted here: compared, not shown
			}
			i++
			continue
		}
		merged = append(merged, entry{key: p.key, value: p.value, stored: p})
	}
	if complete {
		for ; i < len(mine); i++ {
			if v := t.writes[mine[i]]; v != nil {
				merged = append(merged, entry{key: []byte(mine[i]), value: v})
			}
		}
	}
	visited := 0
	var last []byte // the last stored key the scan covered
	defer func() {
		// The range the scan depended on: up to where it stopped.
		rEnd := end
		if last != nil && (!complete || (opts.Limit > 0 && visited >= opts.Limit)) {
			rEnd = append(bytes.Clone(last), 0)
		}
		t.ranges = append(t.ranges, [2][]byte{bytes.Clone(start), bytes.Clone(rEnd)})
		t.checkReads()
	}()
	for _, en := range merged {
		if en.stored != nil {
			if len(t.reads)+len(t.ranges)+1 > t.e.limits.MaxTxnReads {
				return t.checkReadsOver()
			}
			if _, ok := t.reads[string(en.stored.key)]; !ok {
				t.reads[string(en.stored.key)] = en.stored.modRev
			}
			last = en.stored.key
		}
		if en.key == nil {
			continue
		}
		if opts.Limit > 0 && visited >= opts.Limit {
			return nil
		}
		v := en.value
		if opts.KeysOnly {
			v = nil
		}
		visited++
		if err := fn(en.key, v); err != nil {
			return err
		}
	}
	if !complete && (opts.Limit <= 0 || visited < opts.Limit) {
		return t.checkReadsOver()
	}
	return nil
}

func (t *txn) checkReadsOver() error {
	return t.fail(fmt.Errorf("a transaction that scanned more than the %d keys etcd checks (--max-txn-ops): %w",
		t.e.limits.MaxTxnReads, kv.ErrTooBig))
}

func (t *txn) write(key, value []byte) error {
	if t.err != nil {
		return t.err
	}
	if err := t.e.limits.CheckWrite(key, value); err != nil {
		return t.fail(err)
	}
	if _, ok := t.writes[string(key)]; !ok && len(t.writes) >= t.e.limits.MaxTxnKeys {
		return t.fail(fmt.Errorf("a transaction that writes more than %d keys; etcd takes %d operations (--max-txn-ops): %w",
			t.e.limits.MaxTxnKeys, t.e.limits.MaxTxnKeys, kv.ErrTooBig))
	}
	t.nbytes += len(key) + len(value)
	if t.nbytes > t.e.limits.MaxTxnBytes {
		return t.fail(fmt.Errorf("a transaction that writes more than %d bytes; etcd takes %d bytes a request (--max-request-bytes): %w",
			t.e.limits.MaxTxnBytes, t.e.cfg.MaxRequestBytes, kv.ErrTooBig))
	}
	t.writes[string(key)] = value
	return nil
}

func (t *txn) Set(key, value []byte) error {
	if value == nil {
		value = []byte{}
	}
	return t.write(key, bytes.Clone(value))
}

func (t *txn) Delete(key []byte) error { return t.write(key, nil) }

// Attempt implements kv.Engine.
func (e *Engine) Attempt(ctx context.Context, fn func(kv.Txn) error) error {
	if e.closed.Load() {
		return kv.ErrClosed
	}
	t := &txn{reader: reader{e: e, ctx: ctx}, writes: map[string][]byte{}, reads: map[string]int64{}}
	if err := fn(t); err != nil {
		return err
	}
	if t.err != nil {
		return t.err
	}
	if len(t.writes) == 0 {
		return nil // its reads were one consistent state
	}
	if t.rev == 0 {
		// Blind writes: nothing read, nothing to compare.
		t.rev = -1
	}
	var cmps []clientv3.Cmp
	for k, rev := range t.reads {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(e.prefix+k), "=", rev))
	}
	for _, r := range t.ranges {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(e.prefix+string(r[0])), "<", t.rev+1).WithRange(t.rangeEnd(r[1])))
	}
	var ops []clientv3.Op
	for k, v := range t.writes {
		if v == nil {
			ops = append(ops, clientv3.OpDelete(e.prefix+k))
		} else {
			ops = append(ops, clientv3.OpPut(e.prefix+k, string(v)))
		}
	}
	cctx, cancel := e.call(ctx)
	defer cancel()
	resp, err := e.cli.Txn(cctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return e.mapErr(err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("etcd: what the transaction read changed at revision %d or later: %w", t.rev+1, kv.ErrConflict)
	}
	return nil
}

// Sync implements kv.Engine: etcd has made every commit durable on a
// quorum of its members before it answered.
func (e *Engine) Sync() error {
	if e.closed.Load() {
		return kv.ErrClosed
	}
	return nil
}

// Limits implements kv.Engine.
func (e *Engine) Limits() kv.Limits { return e.limits }

// Close implements kv.Engine.
func (e *Engine) Close() error {
	if e.closed.Swap(true) {
		return nil
	}
	return e.cli.Close()
}
