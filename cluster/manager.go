// Package cluster is dhdfs's embedded manager: the namespace and chunk index
// on a Badger meta store in the pool's home, the drive registry, placement,
// replicated chunk writes and verified reads with fallback. It is the only
// package that knows about replicas.
package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dhdfs/dhdfs/cluster/kv"
	"github.com/dhdfs/dhdfs/nodes"
)

// Options configure an open pool.
type Options struct {
	// Logger receives operational messages; nil discards them.
	Logger *slog.Logger
	// WrapStore, if set, wraps each drive's store as it is opened: tests and
	// fault injection use it to make drives misbehave.
	WrapStore func(rec DriveRecord, s nodes.Store) nodes.Store
	// WritesInFlight bounds how many chunks one writer replicates at once.
	// Zero means 4.
	WritesInFlight int
	// CacheBytes bounds the cache of recently read chunks. Zero means
	// 48 MiB; negative disables the cache.
	CacheBytes int64
	// WriteBufferBytes bounds the unflushed write buffers of all open files
	// together (softly: see File.newBuf). Zero means 96 MiB.
	WriteBufferBytes int64
	// ReadOnly refuses changes to the namespace from the commands (put,
	// mkdir, rm) as the mount (-o ro) refuses them from programs.
	ReadOnly bool
	// takeOver claims every drive opened for this home, whichever home
	// used it: recover is the user saying the old home is gone.
	takeOver bool
	// ProbeInterval, if set, checks every drive that often: online drives
	// whose directory vanished become failed, failed drives that work again
	// come back online. Zero disables the checks (one-shot commands).
	ProbeInterval time.Duration
	// HealInterval, if set, runs the healer in the background that often,
	// and at once when a bad copy is found or a drive returns.
	HealInterval time.Duration
	// HealAfter is how long a drive may be offline or failed before the
	// healer copies its chunks elsewhere; a drive briefly unplugged is not
	// rebuilt. Zero means 10 minutes.
	HealAfter time.Duration
	// RepairRate bounds the bytes per second background healing and
	// scrubbing copy or read; zero is unlimited.
	RepairRate int64
	// ScrubInterval, if set, scrubs every drive that often in the background.
	ScrubInterval time.Duration
	// SyncInterval, if set, makes closing a file commit it without waiting
	// for the disks, as local filesystems do: the data and metadata reach
	// the stores' files at close, so a killed process loses nothing, and
	// are synced to disk by a background Sync that often, by fsync, or at
	// Close. A power loss can then take up to that much of the latest
	// changes. Zero syncs every close that changed a file.
	SyncInterval time.Duration
	// MirrorInterval, if set, copies the metadata changes to every drive
	// that often (see MirrorMeta), bounding what losing home loses. Close
	// mirrors in any case.
	MirrorInterval time.Duration
	// DriveTimeout bounds each chunk operation on a drive: a drive that
	// hangs longer is marked failed and its copies are read from others.
	// Zero means 30 s; negative waits forever.
	DriveTimeout time.Duration
	// ReclaimInterval, if set, runs the space reclaimer (reclaim.go): that
	// often it checks each drive's dead bytes and gives them back when they
	// pass ReclaimThreshold; drives short of space are checked every second
	// and reclaimed at once. Zero disables it (one-shot commands).
	ReclaimInterval time.Duration
	// ReclaimThreshold is how many dead bytes a drive gathers (beyond what
	// its last reclaim left) before it is reclaimed, or a quarter of the
	// live data it holds if more. Zero means 256 MiB.
	ReclaimThreshold int64
	// PoisonBuffers overwrites every recycled write buffer with a fixed
	// pattern, so that a bug exposing bytes no write produced shows them
	// at once instead of another file's data (tests, mount --debug-poison).
	PoisonBuffers bool
}

// DefaultOptions are the options of a pool served by a mount: every
// background task on, at the pace the mount's flags document. The zero
// Options, for one-shot commands, run none of them.
func DefaultOptions() Options {
	return Options{
		WritesInFlight:   4,
		CacheBytes:       DefaultCacheBytes,
		WriteBufferBytes: DefaultWriteBufferBytes,
		ProbeInterval:    10 * time.Second,
		HealInterval:     time.Minute,
		HealAfter:        10 * time.Minute,
		RepairRate:       64 << 20,
		ScrubInterval:    7 * 24 * time.Hour,
		SyncInterval:     5 * time.Second,
		MirrorInterval:   5 * time.Second,
		DriveTimeout:     30 * time.Second,
		ReclaimInterval:  10 * time.Second,
		ReclaimThreshold: defaultReclaimThreshold,
	}
}

// Validate reports the first option out of range, wrapping ErrInvalid.
func (o Options) Validate() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"probe interval", o.ProbeInterval}, {"heal interval", o.HealInterval}, {"heal delay", o.HealAfter},
		{"scrub interval", o.ScrubInterval}, {"sync interval", o.SyncInterval}, {"mirror interval", o.MirrorInterval},
		{"reclaim interval", o.ReclaimInterval}} {
		if d.v < 0 {
			return fmt.Errorf("%s %v is negative: %w", d.name, d.v, ErrInvalid)
		}
	}
	switch {
	case o.WritesInFlight < 0:
		return fmt.Errorf("writes in flight %d is negative: %w", o.WritesInFlight, ErrInvalid)
	case o.WriteBufferBytes < 0:
		return fmt.Errorf("write buffer of %d bytes is negative: %w", o.WriteBufferBytes, ErrInvalid)
	case o.RepairRate < 0:
		return fmt.Errorf("repair rate %d is negative: %w", o.RepairRate, ErrInvalid)
	case o.ReclaimThreshold < 0:
		return fmt.Errorf("reclaim threshold %d is negative: %w", o.ReclaimThreshold, ErrInvalid)
	}
	return nil
}

// Manager is an open pool. It is safe for concurrent use.
type Manager struct {
	home string
	cfg  PoolConfig
	opts Options
	log  *slog.Logger
	lock *poolLock
	meta *metaDB

	absent   absentXattrs           // extended attributes known to be absent
	mountDir atomic.Pointer[string] // where this process serves the pool (Mounted)

	drivesMu sync.RWMutex
	drives   map[uint32]*drive // guarded by drivesMu
	addMu    sync.Mutex        // serialises drive additions
	placeMu  sync.Mutex        // serialises placement decisions

	// stripes serialise, per chunk id, the decision "this chunk exists, take a
	// reference" against "no one references it, delete its copies".
	stripes [256]sync.Mutex

	filesMu sync.Mutex
	files   map[Ino]*File    // guarded by filesMu: open regular files
	held    map[Ino]struct{} // guarded by filesMu: inodes the kernel knows

	// bufTokens holds a token per write buffer in use across open files;
	// bufOverdraft counts buffers allocated past the limit.
	bufTokens    chan struct{}
	bufOverdraft atomic.Int64

	changeHook atomic.Pointer[func(parent Ino, name string)]

	badMu    sync.Mutex
	bad      map[nodes.ChunkID]map[uint32]bool // guarded by badMu: copies found missing or corrupt
	healKick chan struct{}                     // wakes the background healer
	healMu   sync.Mutex                        // one heal, drain, rebalance or scrub at a time

	syncs      syncState       // sync rounds (sync.go)
	commitMu   sync.RWMutex    // held shared by commits of layers, alone to start a round
	epoch      atomic.Uint64   // the round commits belong to now
	unsyncedMu sync.Mutex      // guards unsynced
	unsynced   map[uint32]bool // drives written since the last round
	zeroMu     sync.Mutex      // guards zeroQueue, zeroReady and zeroSince
	zeroQueue  []nodes.ChunkID // chunks released since the last round
	zeroReady  []nodes.ChunkID // chunks released before a durable round: to delete
	zeroSince  time.Time       // when the oldest of zeroReady became ready
	settleTo   atomic.Uint64   // epochs below it are durable, their slots to settle
	settled    atomic.Uint64   // epochs below it are settled
	settleKick chan struct{}   // wakes the settler
	settleMu   sync.Mutex      // one settleNow at a time
	syncAt     atomic.Int64    // when Sync was last called (Unix ns): the foreground waits on the disk
	markers    markerQueue     // guarded by settleMu: settled slots whose markers wait to go
	unsettled  unsettledIndex  // slots marked unsettled, by epoch
	roundMu    sync.Mutex      // one sync round or checkpoint at a time
	jrn        journalState    // what the next round journals (journal.go)

	mir    mirror       // the metadata mirror on the drives
	mirLog mirrorLog    // transactions for the mirror's next increment
	reads  atomic.Int64 // chunk reads, to pick which explore (readOrder)

	cache     *chunkCache
	chunkBufs sync.Pool     // of *[]byte, ChunkSize each: buffers of cached chunks (cache.go)
	raSem     chan struct{} // bounds read-ahead fetches in flight
	rc        *reclaimer    // nil unless Options.ReclaimInterval

	done      chan struct{}  // closed by Close: stops background work
	wg        sync.WaitGroup // background goroutines
	closeOnce sync.Once
}

// newHome makes home ready for a new pool: created private to its owner
// (it holds the metadata and the control socket), locked, and holding no
// pool yet.
func newHome(home string) (*poolLock, error) {
	if _, err := os.Stat(filepath.Join(home, configFile)); err == nil {
		return nil, fmt.Errorf("%s: %w", home, ErrPoolExists)
	}
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, fmt.Errorf("create home: %w", err)
	}
	if err := os.Chmod(home, 0o700); err != nil {
		return nil, fmt.Errorf("create home: %w", err)
	}
	lock, err := lockPool(home)
	if err != nil {
		return nil, err
	}
	if entries, _ := os.ReadDir(filepath.Join(home, metaDir)); len(entries) > 0 {
		lock.release()
		return nil, fmt.Errorf("%s has metadata but no %s; refusing to overwrite: %w", home, configFile, ErrPoolExists)
	}
	return lock, nil
}

// Init creates a pool in home with the given settings.
func Init(home string, cfg PoolConfig) (PoolConfig, error) {
	cfg.Format = configFormat
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	lock, err := newHome(home)
	if err != nil {
		return cfg, err
	}
	defer lock.release()
	cfg.PoolID, cfg.HomeID = nodes.NewID(), nodes.NewID()
	cfg.Created = time.Now().UTC().Truncate(time.Second)
	var meta *metaDB
	if cfg.Meta == "" {
		meta, err = openMeta(filepath.Join(home, metaDir), nil)
	} else {
		meta, err = openEngineMeta(cfg.Meta, true)
	}
	if err != nil {
		return cfg, err
	}
	now := time.Now().UnixNano()
	root := Inode{Ino: RootIno, Mode: syscall.S_IFDIR | 0o755, Nlink: 2, Parent: RootIno,
		Uid: uint32(os.Getuid()), Gid: uint32(os.Getgid()), Atime: now, Mtime: now, Ctime: now, Btime: now}
	err = meta.update(func(txn kv.Txn) error {
		if err := set(txn, cleanKey, nil); err != nil {
			return err
		}
		if err := set(txn, inodeCountKey, binary.BigEndian.AppendUint64(nil, 1)); err != nil {
			return err
		}
		return putInode(txn, &root)
	})
	if err == nil {
		err = meta.sync()
	}
	if cerr := meta.close(); err == nil {
		err = cerr
	}
	if err != nil {
		return cfg, fmt.Errorf("create metadata: %w", err)
	}
	// The config is written last: its presence means the pool is complete.
	return cfg, writeConfig(home, cfg)
}

// Open opens the pool in home, taking its lock: one process at a time owns
// the stores.
func Open(home string, opts Options) (*Manager, error) {
	if _, err := readConfig(home); err != nil {
		return nil, err
	}
	lock, err := lockPoolWait(home, opts.Logger)
	if err != nil {
		return nil, err
	}
	m, err := openLocked(home, lock, opts)
	if err != nil {
		lock.release()
		return nil, err
	}
	return m, nil
}

func openLocked(home string, lock *poolLock, opts Options) (*Manager, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	cfg, err := readConfig(home)
	if err != nil {
		return nil, err
	}
	if cfg.HomeID == "" { // a pool from before homes were named
		cfg.HomeID = nodes.NewID()
		if err := writeConfig(home, cfg); err != nil {
			return nil, err
		}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.WritesInFlight <= 0 {
		opts.WritesInFlight = 4
	}
	if opts.DriveTimeout == 0 {
		opts.DriveTimeout = 30 * time.Second
	}
	if opts.HealAfter == 0 {
		opts.HealAfter = 10 * time.Minute
	}
	if opts.CacheBytes == 0 {
		opts.CacheBytes = DefaultCacheBytes
	}
	if opts.WriteBufferBytes <= 0 {
		opts.WriteBufferBytes = DefaultWriteBufferBytes
	}
	m := &Manager{home: home, cfg: cfg, opts: opts, log: opts.Logger, lock: lock,
		drives: map[uint32]*drive{}, files: map[Ino]*File{}, held: map[Ino]struct{}{}, unsynced: map[uint32]bool{},
		done: make(chan struct{}), bad: map[nodes.ChunkID]map[uint32]bool{}, healKick: make(chan struct{}, 1), bufTokens: make(chan struct{}, opts.WriteBufferBytes/int64(cfg.ChunkSize)+1), raSem: make(chan struct{}, readAheadChunks), settleKick: make(chan struct{}, 1)}
	m.cache = newChunkCache(opts.CacheBytes, m.putChunkBuf)
	m.syncs.cond = sync.NewCond(&m.syncs.mu)
	m.syncs.errs = map[uint64]error{}
	m.jrn.init()
	m.initReclaimer() // before the drives open
	m.meta, err = openPoolMeta(home, cfg, m.log)
	if err != nil {
		return nil, err
	}
	var recs []DriveRecord
	err = m.meta.view(func(txn kv.Reader) error {
		return scan(txn, []byte{kDrive}, false, func(_, v []byte) error {
			r, err := decodeDriveRecord(v)
			recs = append(recs, r)
			return err
		})
	})
	if err != nil {
		m.meta.close()
		return nil, fmt.Errorf("load drives: %w", err)
	}
	m.meta.setLogged(m.logBatch)
	for _, r := range recs {
		m.attachDrive(r, false)
	}
	// What the journals hold first: the rest reads the metadata.
	if err := m.replayJournals(); err != nil {
		m.closeStores()
		m.meta.close()
		return nil, fmt.Errorf("replay journals: %w", err)
	}
	for _, d := range m.driveList() {
		m.finishDrivesDeletes(d)
	}
	// Finish what a crash interrupted: free unnamed inodes, collect chunks
	// whose last reference went away.
	if err := m.recover(); err != nil {
		m.closeStores()
		m.meta.close()
		return nil, err
	}
	if opts.ProbeInterval > 0 {
		m.startProber(opts.ProbeInterval)
	}
	if opts.HealInterval > 0 {
		m.startHealer(opts.HealInterval)
	}
	if opts.ScrubInterval > 0 {
		m.startScrubber(opts.ScrubInterval)
	}
	m.loadMirrorState()
	m.startSettler()
	m.startCheckpointer(opts.SyncInterval)
	if opts.MirrorInterval > 0 {
		m.startMirror(opts.MirrorInterval)
	}
	m.startReclaimer()
	return m, nil
}

// Config returns the pool's settings.
func (m *Manager) Config() PoolConfig { return m.cfg }

// sum names a chunk by its content with the pool's hash.
func (m *Manager) sum(data []byte) nodes.ChunkID { return m.cfg.Hash.Sum(data) }

// Home returns the pool's home directory.
func (m *Manager) Home() string { return m.home }

// Close syncs and closes every store and releases the pool lock.
func (m *Manager) Close() error {
	var err error
	m.closeOnce.Do(func() {
		close(m.done)
		m.wg.Wait()
		err = m.FlushAll(context.Background())
		// Settle every slot and delete what that frees: a clean pool
		// has nothing unsettled for the next open to check.
		err = errors.Join(err, m.settleAll())
		// Delete what waits for drives that are usable now, before they
		// are synced: a clean pool leaves no copy that nothing names.
		if _, perr := m.finishAllDeletes(context.Background()); perr != nil {
			m.log.Warn("pending deletes", "err", perr)
		}
		err = errors.Join(err, m.syncAll(), m.meta.sync())
		if err == nil {
			err = m.markClean()
		}
		// After the clean mark, so a pool recovered from the mirror opens
		// clean too.
		if _, merr := m.MirrorMeta(); merr != nil {
			m.log.Warn("mirror metadata", "err", merr)
		}
		err = errors.Join(err, m.closeStores(), m.meta.close())
		m.lock.release()
	})
	return err
}

// FlushAll flushes every open file, as at unmount.
func (m *Manager) FlushAll(ctx context.Context) error {
	m.filesMu.Lock()
	files := make([]*File, 0, len(m.files))
	for _, f := range m.files {
		files = append(files, f)
	}
	m.filesMu.Unlock()
	var errs []error
	for _, f := range files {
		if err := f.Flush(ctx); err != nil {
			errs = append(errs, fmt.Errorf("flush inode %d: %w", f.ino, err))
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) closeStores() error {
	var errs []error
	for _, d := range m.driveList() {
		d.mu.Lock()
		s, jn := d.store, d.jnl
		d.store, d.jnl = nil, nil
		d.mu.Unlock()
		if s != nil {
			errs = append(errs, s.Close())
		}
		if jn != nil {
			errs = append(errs, jn.Close())
		}
	}
	return errors.Join(errs...)
}

// syncAll syncs every online drive.
func (m *Manager) syncAll() error {
	nums := make([]uint32, 0)
	for _, d := range m.driveList() {
		nums = append(nums, d.num)
	}
	return m.syncDrives(nums)
}

// syncDrives syncs the named drives in parallel. A drive that fails to sync
// is marked failed; its copies will be re-created elsewhere by healing, so
// the error is logged rather than returned unless no drive synced.
func (m *Manager) syncDrives(nums []uint32) error {
	_, err := m.syncEach(nums)
	return err
}

// syncEach is syncDrives that also returns each drive's error, errs[i]
// for nums[i].
func (m *Manager) syncEach(nums []uint32) (errs []error, _ error) {
	var wg sync.WaitGroup
	errs = make([]error, len(nums))
	for i, num := range nums {
		d, s := m.storeOf(num)
		if s == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Sync(); err != nil {
				m.driveFailed(d, err)
				errs[i] = err
			}
		}()
	}
	wg.Wait()
	failed := 0
	for _, e := range errs {
		if e != nil {
			failed++
		}
	}
	if failed > 0 && failed == len(nums) {
		return errs, fmt.Errorf("sync drives: %w", errors.Join(errs...))
	}
	return errs, nil
}

func sortDrives(ds []*drive) {
	slices.SortFunc(ds, func(a, b *drive) int { return int(a.num) - int(b.num) })
}
