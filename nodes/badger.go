package nodes

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"golang.org/x/sys/unix"
)

// Options tune one drive's Badger store.
type Options struct {
	// Logger receives Badger's warnings and errors. Nil discards them.
	Logger *slog.Logger
	// ValueLogFileSize sets the size of the store's value-log files, the
	// unit in which deleted space comes back. Zero sizes them from the
	// filesystem (see valueLogFileSize).
	ValueLogFileSize int64
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
	// maint serialises Reclaim and CollectGarbage.
	maint sync.Mutex
	// gate is held shared by writes and exclusively by value-log GC
	// rounds, in race-detector builds only (see gcRound).
	gate sync.RWMutex
	// live is the bytes of the chunks stored, kept up to date by Put and
	// Delete once liveKnown (counted by Space the first time, and again
	// after every Reclaim, so that races between counting and calls do
	// not accumulate).
	live      atomic.Int64
	liveKnown atomic.Bool
	// deleted counts the bytes of chunks deleted or replaced.
	deleted atomic.Int64
}

var _ Reclaimer = (*BadgerStore)(nil)

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
//   - value-log files are small (see valueLogFileSize) so that value-log GC
//     gives space back sooner.
func badgerOptions(dir string, o Options, vlogSize int64) badger.Options {
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
		WithValueLogFileSize(vlogSize).
		WithCompression(options.None).
		WithDetectConflicts(false).
		WithMetricsEnabled(false).
		WithNumGoroutines(2)
}

// OpenBadger opens (creating if needed) the chunk store inside the drive
// directory dir. The caller checks the identity file first.
func OpenBadger(dir string, o Options) (*BadgerStore, error) {
	size := o.ValueLogFileSize
	if size <= 0 {
		size = DefaultValueLogFileSize
	}
	if size <= 0 {
		_, total, err := FilesystemSpace(dir)
		if err != nil {
			return nil, fmt.Errorf("open chunk store in %s: %w", dir, err)
		}
		size = valueLogFileSize(total)
	}
	opts := badgerOptions(filepath.Join(dir, storeDir), o, size)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open chunk store in %s: %w", dir, err)
	}
	return &BadgerStore{dir: dir, opts: opts, db: db}, nil
}

// Value-log files are the unit in which Badger gives space back: value-log
// GC rewrites a file's live values and deletes it, and never touches the
// file being written. They are a 64th of the filesystem, between 16 and
// 256 MiB: on a small drive a file's worth of dead space is then a small
// part of it and rewriting one fits in the space kept free, and a big
// drive still has few enough files (every file is open and mapped: 4 TiB
// is 16,384 files at 256 MiB, and Linux allows 65,530 mappings per
// process by default).
const (
	minValueLogFile = 16 << 20
	maxValueLogFile = 256 << 20
)

// DefaultValueLogFileSize, if positive, is the value-log file size of
// stores opened without Options.ValueLogFileSize, in place of one sized
// from their filesystem. Tests set it to give drives in temp directories
// the behaviour of small drives.
var DefaultValueLogFileSize int64

// valueLogFileSize returns the value-log file size for a filesystem of
// total bytes.
func valueLogFileSize(total int64) int64 {
	return min(max(total/64>>20<<20, minValueLogFile), maxValueLogFile)
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
	var old int64
	err := s.update(func(txn *badger.Txn) error {
		old = 0
		key := chunkKey(id)
		item, err := txn.Get(key)
		switch {
		case err == nil:
			old = item.ValueSize()
		case !errors.Is(err, badger.ErrKeyNotFound):
			return err
		}
		return txn.Set(key, data)
	})
	if err != nil {
		return fmt.Errorf("put chunk %s on %s: %w", id.Short(), s.dir, err)
	}
	s.live.Add(int64(len(data)) - old)
	s.deleted.Add(old)
	return nil
}

// blockedWait bounds how long a write waits while Reclaim has Badger's
// writes blocked (it flushes the memtable; that takes milliseconds).
const blockedWait = 10 * time.Second

// update runs fn in a read-write transaction, waiting while Reclaim has
// Badger's writes blocked. It fails with ErrBusy if that lasts past
// blockedWait.
func (s *BadgerStore) update(fn func(txn *badger.Txn) error) error {
	if raceDetector {
		s.gate.RLock()
		defer s.gate.RUnlock()
	}
	deadline := time.Now().Add(blockedWait)
	for wait := time.Millisecond; ; wait = min(2*wait, 20*time.Millisecond) {
		err := s.db.Update(fn)
		if !errors.Is(err, badger.ErrBlockedWrites) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("writes blocked for %v: %w", blockedWait, ErrBusy)
		}
		time.Sleep(wait)
	}
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
	var old int64
	err := s.update(func(txn *badger.Txn) error {
		old = 0
		key := chunkKey(id)
		item, err := txn.Get(key)
		switch {
		case errors.Is(err, badger.ErrKeyNotFound):
			return nil // nothing to delete: no tombstone either
		case err != nil:
			return err
		}
		old = item.ValueSize()
		return txn.Delete(key)
	})
	if err != nil {
		return fmt.Errorf("delete chunk %s on %s: %w", id.Short(), s.dir, err)
	}
	s.live.Add(-old)
	s.deleted.Add(old)
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
	used, err := storeSize(filepath.Join(s.dir, storeDir))
	if err != nil {
		return Usage{}, err
	}
	free, total, err := FilesystemSpace(s.dir)
	if err != nil {
		return Usage{}, err
	}
	return Usage{Used: used, Free: free, Total: total}, nil
}

// Space implements Reclaimer. The first call counts the stored chunks
// (a pass over the keys, not the values); later calls only measure the
// store's directory.
func (s *BadgerStore) Space() (Space, error) {
	if !s.liveKnown.Load() {
		if err := s.countLive(); err != nil {
			return Space{}, err
		}
	}
	if err := s.enter(); err != nil {
		return Space{}, err
	}
	defer s.mu.RUnlock()
	used, err := storeSize(filepath.Join(s.dir, storeDir))
	if err != nil {
		return Space{}, err
	}
	return Space{Used: used, Live: s.live.Load(), Unit: s.opts.ValueLogFileSize, Deleted: s.deleted.Load()}, nil
}

// Deleted implements Reclaimer.
func (s *BadgerStore) Deleted() int64 { return s.deleted.Load() }

// countLive sets live to the bytes of the chunks stored. Puts and deletes
// that race with the count may be counted twice or not at all; the next
// count sets that right.
func (s *BadgerStore) countLive() error {
	var n int64
	if err := s.Iterate(func(_ ChunkID, size int64) error { n += size; return nil }); err != nil {
		return err
	}
	s.live.Store(n)
	s.liveKnown.Store(true)
	return nil
}

// used returns the bytes the store occupies, or -1 if it cannot tell.
func (s *BadgerStore) used() int64 {
	if err := s.enter(); err != nil {
		return -1
	}
	defer s.mu.RUnlock()
	n, err := storeSize(filepath.Join(s.dir, storeDir))
	if err != nil {
		return -1
	}
	return n
}

// flushKey is a key outside the chunk key space (keyPrefix) that Reclaim
// writes and drops to make Badger flush its memtable (see settle).
var flushKey = []byte("~flush")

// Reclaim implements Reclaimer without closing the store (unless asked to
// Rotate: Badger starts a new value-log file only when it opens): see
// settle for how dead bytes become known, then value-log GC rewrites
// mostly-dead files one per round. Reads go on throughout; writes wait
// while settle flushes (measured: 20 to 200 ms).
func (s *BadgerStore) Reclaim(ctx context.Context, o ReclaimOptions) (ReclaimResult, error) {
	s.maint.Lock()
	defer s.maint.Unlock()
	return s.reclaim(ctx, o)
}

func (s *BadgerStore) reclaim(ctx context.Context, o ReclaimOptions) (ReclaimResult, error) {
	var res ReclaimResult
	ratio := o.MinDead
	if ratio == 0 {
		ratio = 0.5
	}
	if ratio <= 0 || ratio >= 1 {
		return res, fmt.Errorf("reclaim on %s: dead share %v is not in (0, 1)", s.dir, ratio)
	}
	before := s.used()
	if o.Rotate {
		if err := s.reopen(); err != nil {
			return res, err
		}
	}
	if err := s.settle(ctx); err != nil {
		return res, err
	}
	for {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		rewrote, err := s.gcRound(ratio)
		if err != nil || !rewrote {
			if cerr := s.countLive(); err == nil {
				err = cerr
			}
			return res, err
		}
		res.Rounds++
		if after := s.used(); before >= 0 && after >= 0 {
			res.Freed = before - after
		}
		if o.Between != nil {
			if err := o.Between(ctx, res); err != nil {
				return res, err
			}
		}
	}
}

// settle makes Badger's record of dead value-log bytes current. Badger
// learns that a value is dead only when a compaction merges the key's
// deletion (or newer version) with the version pointing at the value;
// deletions of small keys sit in the memtable until it fills, which may
// be never. So settle writes two keys around the whole chunk key space
// and drops them (DropPrefix flushes the memtables and compacts level 0,
// holding writes meanwhile; the flushed table then spans every chunk
// key, so its compaction merges the whole base level), then Flatten
// pushes every level into one, where each deletion meets its value.
func (s *BadgerStore) settle(ctx context.Context) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	low, high := []byte{keyPrefix - 1, '~'}, []byte{keyPrefix + 1, '~'}
	err := s.update(func(txn *badger.Txn) error {
		if err := txn.Set(low, nil); err != nil {
			return err
		}
		return txn.Set(high, nil)
	})
	if err == nil {
		err = s.db.DropPrefix(low, high)
	}
	if err == nil {
		err = ctx.Err()
	}
	if err == nil {
		err = s.db.Flatten(1)
	}
	if err != nil {
		return fmt.Errorf("reclaim on %s: %w", s.dir, err)
	}
	return nil
}

// gcRound runs one round of Badger's value-log GC: the file with the most
// dead bytes is rewritten and deleted if at least ratio of it is dead.
//
// Badger 4.9.6 reads its memtable's newest version at the start of a
// rewrite (DB.MaxVersion) without synchronising with its write goroutine,
// which the race detector reports. The race is benign: the value is one
// machine word, so a racing read sees an older, lower version, and a
// lower bound only keeps more versions through compactions (Badger's own
// comment on gcDiscardTs). Builds with the race detector therefore hold
// writes off during a round, so that tests see real races only; other
// builds let writes go on.
func (s *BadgerStore) gcRound(ratio float64) (bool, error) {
	if err := s.enter(); err != nil {
		return false, err
	}
	defer s.mu.RUnlock()
	if raceDetector {
		s.gate.Lock()
		defer s.gate.Unlock()
	}
	err := s.db.RunValueLogGC(ratio)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, badger.ErrNoRewrite), errors.Is(err, badger.ErrRejected):
		return false, nil
	default:
		return false, fmt.Errorf("value-log GC on %s: %w", s.dir, err)
	}
}

// CollectGarbage gives back all the space of deleted chunks it can, now.
// Unlike Reclaim it also reaches the newest value-log file, which Badger
// never rewrites while it is being written: the database is closed and
// reopened, which starts a new file (calls made meanwhile fail with
// ErrBusy, so the pool reads and writes other drives for that moment),
// and then reclaims as Reclaim does, every file at least half dead.
func (s *BadgerStore) CollectGarbage() error {
	s.maint.Lock()
	defer s.maint.Unlock()
	_, err := s.reclaim(context.Background(), ReclaimOptions{MinDead: 0.5, Rotate: true})
	return err
}

// reopen closes and reopens the database.
func (s *BadgerStore) reopen() error {
	if s.closed.Load() {
		return ErrClosed
	}
	s.cycling.Store(true)
	s.mu.Lock()
	if s.closed.Load() { // Close ran while this waited for the lock
		s.mu.Unlock()
		s.cycling.Store(false)
		return ErrClosed
	}
	err := s.db.Close()
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
		return fmt.Errorf("reopen chunk store on %s: %w", s.dir, err)
	}
	return nil
}

// storeSize sums the allocated size of the files below dir, as dirSize
// does, except that a file deleted while it looks (value-log GC removing
// a file it rewrote) counts as nothing instead of failing the count.
func storeSize(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p != dir && errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				return nil
			}
			return fmt.Errorf("%s: %w", p, err)
		}
		total += st.Blocks * 512
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("measure %s: %w", dir, err)
	}
	return total, nil
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
