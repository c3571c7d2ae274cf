package nodes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// Options tune one drive's Badger store.
type Options struct {
	// Logger receives Badger's warnings and errors. Nil discards them.
	Logger *slog.Logger
}

// keyPrefix keeps room in the key space for other record kinds later.
const keyPrefix = 'c'

// BadgerStore is the Store of a real drive: a Badger v4 database in the
// drive directory's "chunks" subdirectory.
type BadgerStore struct {
	dir  string
	opts badger.Options
	db   *badger.DB // replaced under mu by CollectGarbage
	// mu is held shared by every call and exclusively by Close, so Badger
	// is never closed under a running call.
	mu     sync.RWMutex
	closed atomic.Bool
	// cycling is set while CollectGarbage reopens the database; calls then
	// fail fast with ErrBusy so that callers use another copy.
	cycling atomic.Bool
}

var _ Store = (*BadgerStore)(nil)

// badgerOptions sizes Badger for many stores in one process holding large
// values. Badger's defaults assume one big database per process (64 MiB
// memtables × 5, a 256 MiB block cache, 1 GiB value-log files), about
// 600 MiB per store; these keep a drive near 40 MiB of memory when busy:
//   - values above 1 KiB go to the value log, so chunks are written once and
//     compactions move only keys;
//   - 2 small memtables suffice because keys are tiny;
//   - the block cache is small: chunk reads hit the value log, not blocks,
//     and dhdfs keeps its own chunk cache above the drives;
//   - chunks are already checksummed by dhdfs and incompressible in the
//     common case, so Badger's compression is off;
//   - 256 MiB value-log files let value-log GC give space back sooner.
func badgerOptions(dir string, o Options) badger.Options {
	return badger.DefaultOptions(dir).
		WithLogger(BadgerLogger(o.Logger)).
		WithMemTableSize(8 << 20).
		WithNumMemtables(2).
		WithNumLevelZeroTables(1).
		WithNumLevelZeroTablesStall(8).
		WithBaseTableSize(2 << 20).
		WithNumCompactors(2).
		WithBlockCacheSize(4 << 20).
		WithIndexCacheSize(0).
		WithValueThreshold(1 << 10).
		WithValueLogFileSize(256 << 20).
		WithCompression(options.None).
		WithDetectConflicts(false).
		WithMetricsEnabled(false).
		WithNumGoroutines(2)
}

// OpenBadger opens (creating if needed) the chunk store inside the drive
// directory dir. The caller checks the identity file first.
func OpenBadger(dir string, o Options) (*BadgerStore, error) {
	opts := badgerOptions(filepath.Join(dir, storeDir), o)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open chunk store in %s: %w", dir, err)
	}
	return &BadgerStore{dir: dir, opts: opts, db: db}, nil
}

func chunkKey(id ChunkID) []byte {
	k := make([]byte, 1+len(id))
	k[0] = keyPrefix
	copy(k[1:], id[:])
	return k
}

// enter starts a call; the caller must defer s.mu.RUnlock() when it
// returns nil.
func (s *BadgerStore) enter() error {
	// TryRLock rather than RLock: a call arriving while Close waits must
	// not queue behind a Close that may never finish.
	for !s.mu.TryRLock() {
		if s.closed.Load() {
			return ErrClosed
		}
		if s.cycling.Load() {
			return ErrBusy
		}
		time.Sleep(time.Millisecond)
	}
	if s.closed.Load() {
		s.mu.RUnlock()
		return ErrClosed
	}
	return nil
}

// Put implements Store.
func (s *BadgerStore) Put(id ChunkID, data []byte) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	err := s.db.Update(func(txn *badger.Txn) error {
		return txn.Set(chunkKey(id), data)
	})
	if err != nil {
		return fmt.Errorf("put chunk %s on %s: %w", id.Short(), s.dir, err)
	}
	return nil
}

// Get implements Store.
func (s *BadgerStore) Get(id ChunkID, buf []byte) ([]byte, error) {
	return s.GetRange(id, 0, math.MaxInt, buf)
}

// GetRange implements Store. The value is read through Badger's mapping
// of its value log, so only the pages of the range are touched.
func (s *BadgerStore) GetRange(id ChunkID, off, n int, buf []byte) ([]byte, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(chunkKey(id))
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			buf = append(buf[:0], clip(v, off, n)...)
			return nil
		})
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("get chunk %s on %s: %w", id.Short(), s.dir, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get chunk %s on %s: %w", id.Short(), s.dir, err)
	}
	return buf, nil
}

// clip returns v[off:off+n], cut to v's length.
func clip(v []byte, off, n int) []byte {
	if off >= len(v) || off < 0 || n <= 0 {
		return nil
	}
	return v[off:min(off+n, len(v))]
}

// Has implements Store.
func (s *BadgerStore) Has(id ChunkID) (bool, error) {
	if err := s.enter(); err != nil {
		return false, err
	}
	defer s.mu.RUnlock()
	err := s.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get(chunkKey(id))
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look up chunk %s on %s: %w", id.Short(), s.dir, err)
	}
	return true, nil
}

// Delete implements Store.
func (s *BadgerStore) Delete(id ChunkID) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	err := s.db.Update(func(txn *badger.Txn) error {
		return txn.Delete(chunkKey(id))
	})
	if err != nil {
		return fmt.Errorf("delete chunk %s on %s: %w", id.Short(), s.dir, err)
	}
	return nil
}

// Iterate implements Store.
func (s *BadgerStore) Iterate(fn func(id ChunkID, size int64) error) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	return s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = []byte{keyPrefix}
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			k := item.Key()
			if len(k) != 1+len(ChunkID{}) {
				continue
			}
			var id ChunkID
			copy(id[:], k[1:])
			if err := fn(id, item.ValueSize()); err != nil {
				return err
			}
		}
		return nil
	})
}

// Sync implements Store.
func (s *BadgerStore) Sync() error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if err := s.db.Sync(); err != nil {
		return fmt.Errorf("sync chunk store on %s: %w", s.dir, err)
	}
	return nil
}

// Usage implements Store.
func (s *BadgerStore) Usage() (Usage, error) {
	if err := s.enter(); err != nil {
		return Usage{}, err
	}
	defer s.mu.RUnlock()
	used, err := dirSize(filepath.Join(s.dir, storeDir))
	if err != nil {
		return Usage{}, err
	}
	free, total, err := FilesystemSpace(s.dir)
	if err != nil {
		return Usage{}, err
	}
	return Usage{Used: used, Free: free, Total: total}, nil
}

// CollectGarbage gives the space of deleted chunks back to the
// filesystem. Badger learns which value-log bytes are dead only when it
// compacts the keys that pointed at them, and it compacts only flushed
// tables; deletions sit in the memtable until it fills, which with small
// keys may be never. So the database is closed (flushing the memtable) and
// reopened (its compaction then records the dead bytes), and value-log GC
// rewrites the files that are mostly dead. Calls made meanwhile fail with
// ErrBusy, so the pool reads and writes other drives for that moment.
func (s *BadgerStore) CollectGarbage() error {
	// A compaction that runs at reopen before Badger's read watermark has
	// caught up discards nothing; the next cycle's range-spanning flush
	// (see gcCycle) makes Badger compact that data again.
	for cycle := 0; cycle < 4; cycle++ {
		rewrote, err := s.gcCycle()
		if err != nil || rewrote {
			return err
		}
	}
	return nil
}

// gcCycle reopens the database and runs value-log GC; it reports whether
// any value-log file was rewritten.
func (s *BadgerStore) gcCycle() (bool, error) {
	if s.closed.Load() {
		return false, ErrClosed
	}
	// Two tombstones at the ends of the chunk key space make the table
	// flushed at close span every chunk, so its compaction at reopen merges
	// (and so re-examines) whatever a previous compaction left behind.
	err := s.db.Update(func(txn *badger.Txn) error {
		if err := txn.Delete([]byte{keyPrefix}); err != nil {
			return err
		}
		return txn.Delete(append([]byte{keyPrefix}, bytes.Repeat([]byte{0xff}, len(ChunkID{})+1)...))
	})
	if err != nil {
		return false, fmt.Errorf("collect garbage on %s: %w", s.dir, err)
	}
	s.cycling.Store(true)
	s.mu.Lock()
	err = s.db.Close()
	if err == nil {
		var db *badger.DB
		db, err = badger.Open(s.opts)
		if err == nil {
			s.db = db
		}
	}
	s.mu.Unlock()
	s.cycling.Store(false)
	if err != nil {
		s.closed.Store(true)
		return false, fmt.Errorf("reopen chunk store on %s: %w", s.dir, err)
	}
	if err := s.enter(); err != nil {
		return false, err
	}
	defer s.mu.RUnlock()
	// Wait (briefly) for the compaction of the flushed deletions, which
	// hands Badger its discard statistics; then rewrite mostly-dead files.
	for i := 0; i < 100; i++ {
		if lv := s.db.Levels(); len(lv) == 0 || lv[0].NumTables == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	rewrote := false
	for try := 0; try < 5 && !rewrote; try++ {
		for s.db.RunValueLogGC(0.5) == nil {
			rewrote = true
		}
		if !rewrote {
			time.Sleep(100 * time.Millisecond)
		}
	}
	return rewrote, nil
}

// CloseTimeout bounds how long Close waits for Badger. Badger retries a
// failing memtable flush forever, so closing a store whose directory was
// removed or whose disk died would otherwise hang the whole process.
var CloseTimeout = 10 * time.Second

// Close implements Store. If Badger does not finish within CloseTimeout it
// returns an error and leaves Badger's goroutines behind.
func (s *BadgerStore) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	done := make(chan error, 1)
	go func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		done <- s.db.Close()
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("close chunk store on %s: %w", s.dir, err)
		}
		return nil
	case <-time.After(CloseTimeout):
		return fmt.Errorf("close chunk store on %s: gave up after %v", s.dir, CloseTimeout)
	}
}

// BadgerLogger routes Badger's log lines to l (nil discards them). Badger's
// info chatter (compactions, value-log replays) is demoted to debug.
func BadgerLogger(l *slog.Logger) badger.Logger { return badgerLogger{l} }

type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) log(level slog.Level, format string, args ...any) {
	if b.l == nil || !b.l.Enabled(context.Background(), level) {
		return // skip the formatting: Badger logs a lot at debug level
	}
	b.l.Log(context.Background(), level, "badger: "+fmt.Sprintf(format, args...))
}

func (b badgerLogger) Errorf(f string, a ...any)   { b.log(slog.LevelError, f, a...) }
func (b badgerLogger) Warningf(f string, a ...any) { b.log(slog.LevelWarn, f, a...) }
func (b badgerLogger) Infof(f string, a ...any)    { b.log(slog.LevelDebug, f, a...) }
func (b badgerLogger) Debugf(f string, a ...any)   { b.log(slog.LevelDebug, f, a...) }
