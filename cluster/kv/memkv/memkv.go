// Package memkv is an in-memory kv.Engine for tests: mem:// URLs. The
// data of mem:// goes with Close; the data of mem://NAME lives as long as
// the process, as a server's would, so that a test can close a pool and
// open it again (Forget drops it). Read-write transactions run one at a time, each on a
// copy-on-write clone of the committed tree, so they never conflict;
// views read a clone of their own and never wait for a writer.
package memkv

import (
	"bytes"
	"context"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/google/btree"

	"github.com/dhdfs/dhdfs/cluster/kv"
)

func init() {
	kv.Register("mem", func(u *url.URL) (kv.Engine, error) {
		name := u.Host + u.Path
		if name == "" {
			return New(), nil
		}
		named.mu.Lock()
		defer named.mu.Unlock()
		st := named.m[name]
		if st == nil {
			st = &state{tree: btree.NewG(16, less)}
			named.m[name] = st
		}
		return &Engine{limits: DefaultLimits, st: st}, nil
	})
}

// named holds the data of the named engines.
var named = struct {
	mu sync.Mutex
	m  map[string]*state
}{m: map[string]*state{}}

// Forget drops the data of the named engines whose names start with
// prefix.
func Forget(prefix string) {
	named.mu.Lock()
	defer named.mu.Unlock()
	for name := range named.m {
		if strings.HasPrefix(name, prefix) {
			delete(named.m, name)
		}
	}
}

// DefaultLimits are modest, so that tests on the in-memory engine find
// callers that would overflow a real engine's transactions.
var DefaultLimits = kv.Limits{MaxTxnKeys: 10000, MaxTxnBytes: 16 << 20, MaxKeyBytes: 4096, MaxValueBytes: 4 << 20}

type item struct{ key, value []byte }

func less(a, b item) bool { return bytes.Compare(a.key, b.key) < 0 }

// Engine is the in-memory engine.
type Engine struct {
	limits kv.Limits
	st     *state
	closed atomic.Bool
}

// state is an engine's data, which engines opened by one name share.
type state struct {
	writeMu sync.Mutex // one read-write transaction at a time
	mu      sync.Mutex // guards tree; Clone writes to the tree it clones
	tree    *btree.BTreeG[item]
}

// New returns an empty engine with DefaultLimits.
func New() *Engine { return NewWithLimits(DefaultLimits) }

// NewWithLimits returns an empty engine enforcing l.
func NewWithLimits(l kv.Limits) *Engine {
	return &Engine{limits: l, st: &state{tree: btree.NewG(16, less)}}
}

func (e *Engine) snapshot() (*btree.BTreeG[item], error) {
	e.st.mu.Lock()
	defer e.st.mu.Unlock()
	if e.closed.Load() {
		return nil, kv.ErrClosed
	}
	return e.st.tree.Clone(), nil
}

// View implements kv.Engine.
func (e *Engine) View(ctx context.Context, fn func(kv.Reader) error) error {
	t, err := e.snapshot()
	if err != nil {
		return err
	}
	return fn(reader{t})
}

// Attempt implements kv.Engine.
func (e *Engine) Attempt(ctx context.Context, fn func(kv.Txn) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	e.st.writeMu.Lock()
	defer e.st.writeMu.Unlock()
	t, err := e.snapshot()
	if err != nil {
		return err
	}
	tx := &txn{reader: reader{t}, WriteBudget: kv.WriteBudget{Limits: e.limits, Engine: "the in-memory engine"}}
	if err := fn(tx); err != nil {
		return err
	}
	if tx.Err != nil {
		return tx.Err
	}
	e.st.mu.Lock()
	defer e.st.mu.Unlock()
	if e.closed.Load() {
		return kv.ErrClosed
	}
	e.st.tree = t
	return nil
}

// Sync implements kv.Engine: there is nothing to make durable.
func (e *Engine) Sync() error {
	if e.closed.Load() {
		return kv.ErrClosed
	}
	return nil
}

// Limits implements kv.Engine.
func (e *Engine) Limits() kv.Limits { return e.limits }

// Close implements kv.Engine.
// It waits for a running write.
func (e *Engine) Close() error {
	e.st.writeMu.Lock()
	defer e.st.writeMu.Unlock()
	e.closed.Store(true)
	return nil
}

type reader struct{ t *btree.BTreeG[item] }

func (r reader) Get(key []byte) ([]byte, error) {
	it, ok := r.t.Get(item{key: key})
	if !ok {
		return nil, kv.ErrNotFound // unwrapped: absent keys are common, and formatting costs
	}
	return bytes.Clone(it.value), nil
}

func (r reader) Scan(start, end []byte, opts kv.ScanOptions, fn func(k, v []byte) error) error {
	// Collected first: fn may write to the transaction, and a B-tree must
	// not change while it is walked.
	var items []item
	r.t.AscendGreaterOrEqual(item{key: start}, func(it item) bool {
		if end != nil && bytes.Compare(it.key, end) >= 0 {
			return false
		}
		items = append(items, it)
		return opts.Limit <= 0 || len(items) < opts.Limit
	})
	for _, it := range items {
		v := it.value
		if opts.KeysOnly {
			v = nil
		}
		// Stored slices are never written again: fn reads them in place.
		if err := fn(it.key, v); err != nil {
			return err
		}
	}
	return nil
}

type txn struct {
	reader
	kv.WriteBudget
}

func (t *txn) Set(key, value []byte) error {
	if err := t.Add(key, value); err != nil {
		return err
	}
	t.t.ReplaceOrInsert(item{key: bytes.Clone(key), value: bytes.Clone(value)})
	return nil
}

func (t *txn) Delete(key []byte) error {
	if err := t.Add(key, nil); err != nil {
		return err
	}
	t.t.Delete(item{key: key})
	return nil
}
