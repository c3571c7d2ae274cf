// Package badgerkv is the embedded kv.Engine, a Badger database in a
// directory: badger:///path URLs and bare paths.
//
// Read-write transactions run one at a time (Badger's own conflict
// detection is off), which is serializable by construction and spares
// Badger tracking every key read; views are Badger snapshots and never
// wait for writers.
package badgerkv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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
	owned   bool // Close closes db
	limits  kv.Limits
	writeMu sync.Mutex
	closed  atomic.Bool
}

// Open opens (or creates) the database opts names.
// A panic of Badger's while it opens the store (replaying a damaged
// write-ahead log, say) is returned as a *kv.DamagedError.
func Open(opts badger.Options) (_ *Engine, err error) {
	defer recoverBadger(opts.Dir, &err)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open metadata store %s: %w", opts.Dir, err)
	}
	e := New(db)
	e.owned = true
	return e, nil
}

// New serves an open database, which stays the caller's to close.
func New(db *badger.DB) *Engine {
	// Badger counts each entry as its key, value and 12 bytes (metas and
	// version) against a batch, and refuses a batch that reaches its count
	// or size: the limits leave room for that, so the engine's own check,
	// with a clear message, always fires first.
	count, size := int(db.MaxBatchCount()), int(db.MaxBatchSize())
	return &Engine{db: db, dir: db.Opts().Dir, limits: kv.Limits{
		MaxTxnKeys:    count - 1,
		MaxTxnBytes:   size - entryOverhead*count,
		MaxKeyBytes:   keyLimit,
		MaxValueBytes: int(min(db.Opts().ValueLogFileSize/2, 1<<30)),
	}}
}

// View implements kv.Engine.
func (e *Engine) View(ctx context.Context, fn func(kv.Reader) error) (err error) {
	defer recoverBadger(e.dir, &err)
	if e.closed.Load() {
		return kv.ErrClosed
	}
	return e.db.View(func(t *badger.Txn) error { return fn(reader{t}) })
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
	bt := e.db.NewTransaction(true)
	defer bt.Discard()
	t := &txn{reader: reader{bt}, WriteBudget: kv.WriteBudget{Limits: e.limits, Engine: "Badger"}}
	if err := fn(t); err != nil {
		return err
	}
	if t.Err != nil {
		return t.Err
	}
	return mapErr(bt.Commit())
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
	if e.closed.Swap(true) || !e.owned {
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
