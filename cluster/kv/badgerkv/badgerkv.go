// Package badgerkv is the embedded kv.Engine, a Badger database in a
// directory: badger:///path URLs and bare paths.
//
// Read-write transactions run one at a time (Badger's own conflict
// detection is off), which is serializable by construction and spares
// Badger tracking every key read; views are Badger snapshots and never
// wait for writers.
//
// Badger runs in managed mode: the engine hands out the timestamps.
// With writes one at a time, the last commit's timestamp is a snapshot
// of everything committed, so a view needs nothing but that number.
// Badger's own oracle instead signals its watermark goroutines four times
// per write and twice per view, each a wake-up of another goroutine: on a
// small synchronous write, which takes several transactions, those
// hand-offs cost more than the transactions' work (docs/benchmarks.md).
// The timestamps are the versions Badger stores either way, so a store
// opens in either mode.
package badgerkv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"sync"
	"sync/atomic"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/dhdfs/dhdfs/cluster/kv"
)

func init() {
	kv.Register("badger", func(u *url.URL) (kv.Engine, error) {
		if u.Host != "" {
			return nil, fmt.Errorf("badger://%s%s: want badger:///absolute/path or a plain path", u.Host, u.Path)
		}
		if u.Path == "" {
			return nil, errors.New("badger: no directory in the URL")
		}
		return Open(DefaultOptions(u.Path))
	})
}

// DefaultOptions are the options of a metadata store in dir: synchronous
// writes off (Sync makes them durable) and Badger's logging silenced.
func DefaultOptions(dir string) badger.Options {
	return badger.DefaultOptions(dir).WithLogger(nil).WithDetectConflicts(false)
}

// entryOverhead is what Badger adds to each entry's key and value when it
// sizes a batch (txn.checkSize).
const entryOverhead = 12

// keyLimit is Badger's own bound on a key.
const keyLimit = 65000

// Engine is the Badger engine.
type Engine struct {
	db      *badger.DB
	dir     string
	limits  kv.Limits
	writeMu sync.Mutex
	closed  atomic.Bool
	// committed is the timestamp of the last write: views read at it.
	committed atomic.Uint64
	views     openViews
}

// Open opens (or creates) the database opts names.
// A panic of Badger's while it opens the store (replaying a damaged
// write-ahead log, say) is returned as a *kv.DamagedError.
func Open(opts badger.Options) (_ *Engine, err error) {
	defer recoverBadger(opts.Dir, &err)
	db, err := badger.OpenManaged(opts)
	if err != nil {
		return nil, fmt.Errorf("open metadata store %s: %w", opts.Dir, err)
	}
	// Badger counts each entry as its key, value and 12 bytes (metas and
	// version) against a batch, and refuses a batch that reaches its count
	// or size: the limits leave room for that, so the engine's own check,
	// with a clear message, always fires first.
	count, size := int(db.MaxBatchCount()), int(db.MaxBatchSize())
	e := &Engine{db: db, dir: db.Opts().Dir, limits: kv.Limits{
		MaxTxnKeys:    count - 1,
		MaxTxnBytes:   size - entryOverhead*count,
		MaxKeyBytes:   keyLimit,
		MaxValueBytes: int(min(db.Opts().ValueLogFileSize/2, 1<<30)),
	}}
	e.committed.Store(db.MaxVersion())
	e.views.discard = db.SetDiscardTs
	e.views.release(e.committed.Load())
	return e, nil
}

// openViews tracks the timestamps open views read at. Badger keeps old
// versions of keys only above the discard timestamp the engine sets, so
// that is never above the oldest open view's (as Badger's own oracle
// keeps it below its oldest reader).
type openViews struct {
	mu      sync.Mutex
	at      map[uint64]int // timestamp: how many open views read at it
	discard func(ts uint64)
	set     uint64 // the discard timestamp last set
}

// open registers a view and returns its timestamp, read under the lock
// so that a release running at the same time counts it.
func (v *openViews) open(committed *atomic.Uint64) uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	ts := committed.Load()
	if v.at == nil {
		v.at = map[uint64]int{}
	}
	v.at[ts]++
	return ts
}

// close ends a view at ts.
func (v *openViews) close(ts uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.at[ts]--; v.at[ts] <= 0 {
		delete(v.at, ts)
	}
}

// release lets Badger discard what no view can read any more: versions
// replaced at or below both latest (the last commit) and every open
// view's timestamp.
func (v *openViews) release(latest uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	ts := latest
	for at := range v.at {
		ts = min(ts, at)
	}
	if ts != v.set {
		v.set = ts
		v.discard(ts)
	}
}

// View implements kv.Engine.
func (e *Engine) View(ctx context.Context, fn func(kv.Reader) error) (err error) {
	defer recoverBadger(e.dir, &err)
	if e.closed.Load() {
		return kv.ErrClosed
	}
	ts := e.views.open(&e.committed)
	defer e.views.close(ts)
	t := e.db.NewTransactionAt(ts, false)
	defer t.Discard()
	return fn(reader{t})
}

// Attempt implements kv.Engine.
func (e *Engine) Attempt(ctx context.Context, fn func(kv.Txn) error) (err error) {
	defer recoverBadger(e.dir, &err)
	if err := ctx.Err(); err != nil {
		return err
	}
	e.writeMu.Lock()
	defer e.writeMu.Unlock()
	if e.closed.Load() {
		return kv.ErrClosed
	}
	// Writes run one at a time: the last commit is the latest state.
	readTs := e.committed.Load()
	if readTs == math.MaxUint64-1 {
		return errors.New("badger: timestamps exhausted")
	}
	bt := e.db.NewTransactionAt(readTs, true)
	defer bt.Discard()
	t := &txn{reader: reader{bt}, WriteBudget: kv.WriteBudget{Limits: e.limits, Engine: "Badger"}}
	if err := fn(t); err != nil {
		return err
	}
	if t.Err != nil {
		return t.Err
	}
	err = bt.CommitAt(readTs+1, nil)
	// Even a failed commit may have written some of its entries: the
	// timestamp is used, never handed out again.
	e.committed.Store(readTs + 1)
	e.views.release(readTs + 1)
	return mapErr(err)
}

func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, badger.ErrConflict):
		return fmt.Errorf("%w: %w", kv.ErrConflict, err)
	case errors.Is(err, badger.ErrTxnTooBig):
		return fmt.Errorf("%w: %w", kv.ErrTooBig, err)
	case errors.Is(err, badger.ErrDBClosed):
		return fmt.Errorf("%w: %w", kv.ErrClosed, err)
	}
	return err
}

// Sync implements kv.Engine.
func (e *Engine) Sync() (err error) {
	defer recoverBadger(e.dir, &err)
	if e.closed.Load() {
		return kv.ErrClosed
	}
	return mapErr(e.db.Sync())
}

// Limits implements kv.Engine.
func (e *Engine) Limits() kv.Limits { return e.limits }

// Close implements kv.Engine. It waits for a running write.
func (e *Engine) Close() error {
	e.writeMu.Lock()
	defer e.writeMu.Unlock()
	if e.closed.Swap(true) {
		return nil
	}
	return e.db.Close()
}

type reader struct{ t *badger.Txn }

func (r reader) Get(key []byte) ([]byte, error) {
	it, err := r.t.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, kv.ErrNotFound // unwrapped: absent keys are common, and formatting costs
	}
	if err != nil {
		return nil, mapErr(err)
	}
	return it.ValueCopy(nil)
}

func (r reader) Scan(start, end []byte, opts kv.ScanOptions, fn func(k, v []byte) error) error {
	io := badger.DefaultIteratorOptions
	io.PrefetchValues = !opts.KeysOnly
	if opts.Limit > 0 && opts.Limit < io.PrefetchSize {
		io.PrefetchSize = opts.Limit
	}
	// A common prefix of the bounds lets Badger skip tables outside it.
	io.Prefix = commonPrefix(start, end)
	it := r.t.NewIterator(io)
	defer it.Close()
	n := 0
	for it.Seek(start); it.Valid(); it.Next() {
		item := it.Item()
		k := item.Key()
		if end != nil && bytes.Compare(k, end) >= 0 {
			break
		}
		var v []byte
		if !opts.KeysOnly {
			var err error
			if v, err = item.ValueCopy(nil); err != nil {
				return mapErr(err)
			}
		}
		if err := fn(k, v); err != nil {
			return err
		}
		if n++; opts.Limit > 0 && n >= opts.Limit {
			break
		}
	}
	return nil
}

func commonPrefix(a, b []byte) []byte {
	if b == nil {
		return nil
	}
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return a[:n]
}

type txn struct {
	reader
	kv.WriteBudget
}

func (t *txn) Set(key, value []byte) error {
	if err := t.Add(key, value); err != nil {
		return err
	}
	// Badger keeps the slices until the commit: copies, so the caller may
	// reuse its buffers.
	if err := t.t.Set(bytes.Clone(key), bytes.Clone(value)); err != nil {
		t.Err = mapErr(err)
		return t.Err
	}
	return nil
}

func (t *txn) Delete(key []byte) error {
	if err := t.Add(key, nil); err != nil {
		return err
	}
	if err := t.t.Delete(bytes.Clone(key)); err != nil {
		t.Err = mapErr(err)
		return t.Err
	}
	return nil
}
