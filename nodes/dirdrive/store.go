package dirdrive

import (
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
	"github.com/dhdfs/dhdfs/nodes"
	"github.com/dhdfs/dhdfs/nodes/badgerlog"
	"golang.org/x/sys/unix"
)

// The key space of a store's Badger database:
//
//	'c' + ChunkID   a chunk. UserMeta metaInline: the value is the chunk's
//	                bytes (chunks under inlineLimit, and every chunk of a
//	                drive written before packs existed, which then sits in
//	                Badger's value log). UserMeta metaPacked: the value is
//	                a packLoc, and the bytes are in a pack.
//	"~packs"        the packs' state (see storeState).
//
// Reclaim's settle also writes and drops keys starting "b~" and "d~".
const (
	keyPrefix  = 'c'
	metaInline = 0
	metaPacked = 1
)

// inlineLimit: chunks shorter than this stay in Badger, in its LSM tree
// (Badger's ValueThreshold is the same, so none goes to its value log): a
// pack entry's header and a pread would cost more than they save.
const inlineLimit = 1 << 10

// stripeCount is the number of locks that serialise the index updates of
// chunks with the same id (see BadgerStore.stripes).
const stripeCount = 1024

// BadgerStore is the Store of a real drive: a Badger v4 database in the
// drive directory's "chunks" subdirectory indexing chunks whose bytes are
// in pack files in its "packs" subdirectory (see pack.go).
type BadgerStore struct {
	dir   string
	opts  badger.Options
	log   *slog.Logger // never nil
	db    *badger.DB   // replaced under mu by reopen
	packs *packSet
	// inline is inlineLimit except in benchmarks of the old layout, which
	// set it higher to put every chunk in Badger's value log.
	inline int
	// mu is held shared by every call and exclusively by Close, so Badger
	// is never closed under a running call.
	mu     sync.RWMutex
	closed atomic.Bool
	// cycling is set while reopen reopens the database; calls then fail
	// fast with ErrBusy so that callers use another copy.
	cycling atomic.Bool
	// maint serialises Reclaim and CollectGarbage.
	maint sync.Mutex
	// gate is held shared by writes and exclusively by value-log GC
	// rounds, in race-detector builds only (see gcRound).
	gate sync.RWMutex
	// stripes serialise what changes the index entry of one id: a Put
	// holds its id's stripe from reserving pack space until its index
	// entry is committed (so that Reclaim, which checks each entry of a
	// pack under its stripe, cannot miss a Put into that pack committing
	// late), Delete and Reclaim's re-pointing from reading the old entry
	// to committing, and countLive all of them for an instant. A stripe is
	// never held while taking another. One store-wide lock would serialise
	// Badger commits, which Badger batches when they come concurrently.
	stripes [stripeCount]sync.Mutex
	// countMu is held by countLive while the counters below are being
	// rebuilt, and shared by Space to read them.
	countMu sync.RWMutex
	// live is the bytes of the chunks stored, and each pack's live the
	// bytes of its entries the index points at. Every index update adjusts
	// them under its stripe; countLive sets them from the index the first
	// time they are needed.
	live      atomic.Int64
	liveKnown atomic.Bool
	// deleted counts the bytes of chunks deleted or replaced.
	deleted atomic.Int64
	// dirty is set, durably (see markDirty), before the first change
	// after a clean open: until then Sync and Close write nothing, so
	// that opening a pool to read it leaves its drives as they were.
	dirty atomic.Bool
	// stateMu serialises the writes of the packs' state and guards
	// recorded, the state last written.
	stateMu  sync.Mutex
	recorded storeState
}

var _ nodes.Reclaimer = (*BadgerStore)(nil)

var _ nodes.Store = (*BadgerStore)(nil)

// badgerOptions sizes Badger for many stores in one process holding
// small values: chunk bytes go to packs, Badger holds their locations
// (and the bytes of drives written before packs, in its value log). Badger's
// defaults assume one big database per process (64 MiB memtables × 5, a
// 256 MiB block cache, 1 GiB value-log files), about 600 MiB per store;
// these keep a drive within StoreMemory (10 MiB) when busy:
//   - values of 1 KiB and more go to the value log, so that old drives'
//     chunks were written once and compactions move only keys;
//   - 2 memtables of 4 MiB suffice because keys and locations are tiny
//     (a memtable's 15% is also Badger's largest transaction, ~600 KiB:
//     every transaction here changes one chunk);
//   - the block cache is small: dhdfs keeps its own chunk cache above the
//     drives;
//   - chunks are already checksummed by dhdfs and incompressible in the
//     common case, so Badger's compression is off;
//   - value-log files are small (see valueLogFileSize) so that value-log GC
//     gives old drives' space back sooner.
func badgerOptions(dir string, o nodes.Options, vlogSize int64) badger.Options {
	return badger.DefaultOptions(dir).
		WithLogger(badgerlog.New(o.Logger)).
		WithMemTableSize(storeMemtable).
		WithNumMemtables(storeMemtables).
		WithNumLevelZeroTables(1).
		WithNumLevelZeroTablesStall(8).
		WithBaseTableSize(2 << 20).
		WithNumCompactors(2).
		WithBlockCacheSize(storeBlockCache).
		WithIndexCacheSize(0).
		WithValueThreshold(inlineLimit).
		WithValueLogFileSize(vlogSize).
		WithCompression(options.None).
		WithDetectConflicts(false).
		WithMetricsEnabled(false).
		WithNumGoroutines(2)
}

// OpenBadger opens (creating if needed) the chunk store inside the drive
// directory dir. The caller checks the identity file first. If the store
// was not closed cleanly, it first checks the chunks written since its
// last Sync (see recover).
func OpenBadger(dir string, o nodes.Options) (*BadgerStore, error) {
	size := o.ValueLogFileSize
	if size <= 0 {
		size = DefaultValueLogFileSize
	}
	if size <= 0 {
		_, total, err := nodes.FilesystemSpace(dir)
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
	ps, err := openPacks(filepath.Join(dir, packDir), size)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open chunk store in %s: %w", dir, err)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &BadgerStore{dir: dir, opts: opts, log: log, db: db, packs: ps, inline: inlineLimit}
	if err := s.recover(); err != nil {
		ps.close()
		db.Close()
		return nil, fmt.Errorf("open chunk store in %s: %w", dir, err)
	}
	return s, nil
}

// Pack and value-log files are the unit in which space comes back: Reclaim
// rewrites a file's live chunks and deletes it, and never touches the
// file being written. They are a 64th of the filesystem, between 16 and
// 256 MiB: on a small drive a file's worth of dead space is then a small
// part of it and rewriting one fits in the space kept free, and a big
// drive still has few enough files (every pack is open, and every value-log
// file open and mapped: 4 TiB is 16,384 files at 256 MiB, and Linux allows
// 65,530 mappings per process by default).
const (
	minValueLogFile = 16 << 20
	maxValueLogFile = 256 << 20
)

// DefaultValueLogFileSize, if positive, is the pack and value-log file
// size of stores opened without Options.ValueLogFileSize, in place of one
// sized from their filesystem. Tests set it to give drives in temp
// directories the behaviour of small drives.
var DefaultValueLogFileSize int64

// valueLogFileSize returns the pack and value-log file size for a
// filesystem of total bytes.
func valueLogFileSize(total int64) int64 {
	return min(max(total/64>>20<<20, minValueLogFile), maxValueLogFile)
}

// StoreDirs returns the directories of the chunk store inside the drive
// directory dir: what deleting a drive's data deletes, and what a test
// taking a snapshot of a drive copies.
func StoreDirs(dir string) []string {
	return []string{filepath.Join(dir, storeDir), filepath.Join(dir, packDir)}
}

func chunkKey(id nodes.ChunkID) []byte {
	k := make([]byte, 1+len(id))
	k[0] = keyPrefix
	copy(k[1:], id[:])
	return k
}

// stripe returns the lock of id's index entry.
func (s *BadgerStore) stripe(id nodes.ChunkID) *sync.Mutex {
	return &s.stripes[(int(id[0])|int(id[1])<<8)%stripeCount]
}

// enter starts a call; the caller must defer s.mu.RUnlock() when it
// returns nil.
func (s *BadgerStore) enter() error {
	// TryRLock rather than RLock: a call arriving while Close waits must
	// not queue behind a Close that may never finish.
	for !s.mu.TryRLock() {
		if s.closed.Load() {
			return nodes.ErrClosed
		}
		if s.cycling.Load() {
			return nodes.ErrBusy
		}
		time.Sleep(time.Millisecond)
	}
	if s.closed.Load() {
		s.mu.RUnlock()
		return nodes.ErrClosed
	}
	return nil
}

// stored describes a chunk's index entry.
type stored struct {
	ok     bool    // there is one
	size   int64   // the chunk's length
	packed bool    // its bytes are in a pack, at loc
	loc    packLoc // if packed
}

// lookup decodes the index entry item.
func lookup(item *badger.Item) (stored, error) {
	if item.UserMeta() != metaPacked {
		return stored{ok: true, size: item.ValueSize()}, nil
	}
	var loc packLoc
	err := item.Value(func(v []byte) error {
		var err error
		loc, err = decodePackLoc(v)
		return err
	})
	if err != nil {
		return stored{}, err
	}
	return stored{ok: true, size: loc.size, packed: true, loc: loc}, nil
}

// getStored returns id's index entry in txn.
func getStored(txn *badger.Txn, id nodes.ChunkID) (stored, error) {
	item, err := txn.Get(chunkKey(id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return stored{}, nil
	}
	if err != nil {
		return stored{}, err
	}
	return lookup(item)
}

// account adds sign times the chunk st to the live counters. The caller
// holds the chunk's stripe and has committed the change.
func (s *BadgerStore) account(st stored, sign int64) {
	if !st.ok {
		return
	}
	s.live.Add(sign * st.size)
	if st.packed {
		if p := s.packs.get(st.loc.pack); p != nil {
			p.live.Add(sign * st.loc.entrySize())
		}
	}
}

// Put implements Store. A Put of a chunk already stored replaces it: heal
// repairs a damaged copy that way. Chunks of inlineLimit and more are
// appended to the active pack first, then indexed.
func (s *BadgerStore) Put(id nodes.ChunkID, data []byte) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if err := s.markDirty(); err != nil {
		return fmt.Errorf("put chunk %s on %s: %w", id.Short(), s.dir, err)
	}
	mu := s.stripe(id)
	mu.Lock()
	defer mu.Unlock()
	key, val, meta := chunkKey(id), data, byte(metaInline)
	now := stored{ok: true, size: int64(len(data))}
	if len(data) >= s.inline {
		loc, err := s.packs.append(id, data)
		if err != nil {
			return fmt.Errorf("put chunk %s on %s: %w", id.Short(), s.dir, err)
		}
		val, meta = loc.encode(), metaPacked
		now = stored{ok: true, size: loc.size, packed: true, loc: loc}
	}
	var old stored
	err := s.update(func(txn *badger.Txn) error {
		var err error
		if old, err = getStored(txn, id); err != nil {
			return err
		}
		// A new entry each try: a failed commit may have changed it.
		return txn.SetEntry(badger.NewEntry(key, val).WithMeta(meta))
	})
	if err != nil {
		// A pack entry written for nothing is dead space.
		return fmt.Errorf("put chunk %s on %s: %w", id.Short(), s.dir, err)
	}
	s.account(old, -1)
	s.account(now, 1)
	s.deleted.Add(old.size)
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
			return fmt.Errorf("writes blocked for %v: %w", blockedWait, nodes.ErrBusy)
		}
		time.Sleep(wait)
	}
}

// Get implements Store.
func (s *BadgerStore) Get(id nodes.ChunkID, buf []byte) ([]byte, error) {
	return s.GetRange(id, 0, math.MaxInt, buf)
}

// GetRange implements Store. A packed chunk is read with one pread of just
// the range; an inline one (or an old drive's, in Badger's value log)
// through Badger's mapping, which touches only the pages of the range.
func (s *BadgerStore) GetRange(id nodes.ChunkID, off, n int, buf []byte) ([]byte, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	// Reclaim may move the chunk and delete its pack between the lookup
	// and the read: then the index points at the new place.
	for tries := 0; ; tries++ {
		var st stored
		err := s.db.View(func(txn *badger.Txn) error {
			item, err := txn.Get(chunkKey(id))
			if err != nil {
				return err
			}
			if item.UserMeta() == metaPacked {
				st, err = lookup(item)
				return err
			}
			return item.Value(func(v []byte) error {
				buf = append(buf[:0], nodes.Range(v, off, n)...)
				return nil
			})
		})
		if err == nil && st.packed {
			buf, err = s.packs.read(st.loc, off, n, buf)
			if errors.Is(err, errPackGone) && tries < 3 {
				continue
			}
		}
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil, fmt.Errorf("get chunk %s on %s: %w", id.Short(), s.dir, nodes.ErrNotFound)
		}
		if err != nil {
			return nil, fmt.Errorf("get chunk %s on %s: %w", id.Short(), s.dir, err)
		}
		return buf, nil
	}
}

// Has implements Store.
func (s *BadgerStore) Has(id nodes.ChunkID) (bool, error) {
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
func (s *BadgerStore) Delete(id nodes.ChunkID) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if err := s.markDirty(); err != nil {
		return fmt.Errorf("delete chunk %s on %s: %w", id.Short(), s.dir, err)
	}
	return s.deleteIf(id, "delete", func(st stored) bool { return st.ok })
}

// deleteIf deletes chunk id from the index if its entry passes cond (an
// absent chunk has a zero entry), under the id's lock, and counts its
// bytes as deleted. what names the operation in errors.
func (s *BadgerStore) deleteIf(id nodes.ChunkID, what string, cond func(stored) bool) error {
	mu := s.stripe(id)
	mu.Lock()
	defer mu.Unlock()
	var old stored
	err := s.update(func(txn *badger.Txn) error {
		var err error
		if old, err = getStored(txn, id); err != nil || !cond(old) {
			old = stored{}
			return err // nothing to delete: no tombstone either
		}
		return txn.Delete(chunkKey(id))
	})
	if err != nil {
		return fmt.Errorf("%s chunk %s on %s: %w", what, id.Short(), s.dir, err)
	}
	s.account(old, -1)
	s.deleted.Add(old.size)
	return nil
}

// Iterate implements Store.
func (s *BadgerStore) Iterate(fn func(id nodes.ChunkID, size int64) error) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	return s.db.View(func(txn *badger.Txn) error {
		return iterateIndex(txn, func(id nodes.ChunkID, st stored) error { return fn(id, st.size) })
	})
}

// iterateIndex calls fn for every chunk's index entry in txn, in id order.
func iterateIndex(txn *badger.Txn, fn func(id nodes.ChunkID, st stored) error) error {
	opts := badger.DefaultIteratorOptions
	opts.PrefetchValues = false
	opts.Prefix = []byte{keyPrefix}
	it := txn.NewIterator(opts)
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		k := item.Key()
		if len(k) != 1+len(nodes.ChunkID{}) {
			continue
		}
		var id nodes.ChunkID
		copy(id[:], k[1:])
		st, err := lookup(item)
		if err != nil {
			return fmt.Errorf("index entry of chunk %s: %w", id.Short(), err)
		}
		if err := fn(id, st); err != nil {
			return err
		}
	}
	return nil
}

// Sync implements Store: the packs written since the last Sync are synced
// first, then the sync point is recorded (see storeState) and Badger
// synced, so that no synced index entry points at unsynced bytes.
func (s *BadgerStore) Sync() error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if err := s.sync(false); err != nil {
		return fmt.Errorf("sync chunk store on %s: %w", s.dir, err)
	}
	return nil
}

// sync makes every write that ended before it durable, and records the
// packs' state with the clean flag given. With nothing changed since a
// clean open there is nothing to do.
func (s *BadgerStore) sync(clean bool) error {
	if !s.dirty.Load() {
		return nil
	}
	at, err := s.packs.flush()
	if err != nil {
		return err
	}
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	if err := s.record(storeState{clean: clean, synced: at}); err != nil {
		return err
	}
	return s.db.Sync()
}

// Usage implements Store.
func (s *BadgerStore) Usage() (nodes.Usage, error) {
	if err := s.enter(); err != nil {
		return nodes.Usage{}, err
	}
	defer s.mu.RUnlock()
	used, err := s.size()
	if err != nil {
		return nodes.Usage{}, err
	}
	free, total, err := nodes.FilesystemSpace(s.dir)
	if err != nil {
		return nodes.Usage{}, err
	}
	return nodes.Usage{Used: used, Free: free, Total: total}, nil
}

// size returns the bytes the store's files occupy. The caller has
// entered.
func (s *BadgerStore) size() (int64, error) {
	var total int64
	for _, d := range StoreDirs(s.dir) {
		n, err := storeSize(d)
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
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

// Close implements Store. It syncs the store and marks it closed cleanly,
// so that the next open need not check the chunks written since the last
// Sync. If Badger does not finish within CloseTimeout it returns an error
// and leaves Badger's goroutines behind.
func (s *BadgerStore) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	done := make(chan error, 1)
	go func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		err := s.sync(true)
		if cerr := s.db.Close(); err == nil {
			err = cerr
		}
		s.packs.close()
		done <- err
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
