package cluster

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dhdfs/dhdfs/nodes"
	// The default kind of drive: a directory (bare paths, dir://).
	_ "github.com/dhdfs/dhdfs/nodes/dirdrive"
)

// DriveState is what `node list` shows for a drive.
type DriveState string

const (
	// StateOnline drives serve reads and take new chunks.
	StateOnline DriveState = "online"
	// StateOffline drives were taken offline by the user (as if unplugged):
	// dhdfs neither reads nor writes them until `node online`.
	StateOffline DriveState = "offline"
	// StateFailed drives could not be opened or returned an I/O error.
	StateFailed DriveState = "failed"
	// StateDraining drives are being emptied by `node drain`: they serve
	// reads but take no new chunks.
	StateDraining DriveState = "draining"
)

// DriveRecord is the persistent description of a drive, kept in the meta
// store.
type DriveRecord struct {
	// Num is a small number, unique in the pool, that chunk records use to
	// name holders compactly.
	Num    uint32            `json:"num"`
	ID     string            `json:"id"`
	Name   string            `json:"name"`
	Path   string            `json:"path"`
	Labels map[string]string `json:"labels,omitempty"`
	// Offline is the user's choice; failure is runtime state, never stored.
	Offline bool `json:"offline,omitempty"`
	// Since is when the drive went offline.
	Since time.Time `json:"since,omitempty"`
	// Draining drives take no new chunks; `node drain` empties them.
	Draining bool `json:"draining,omitempty"`
	// Verified is when a scrub last read and checked every chunk on it.
	Verified time.Time `json:"verified,omitempty"`
	Device   uint64    `json:"device"`
	Added    time.Time `json:"added"`
	// Reserve is the bytes left free on the drive's filesystem; 0 means
	// DefaultReserve.
	Reserve int64 `json:"reserve,omitempty"`
	// Domain is the drive's failure domain (nodes.Drive.FailureDomain);
	// empty in records from before, whose Device says it.
	Domain string `json:"domain,omitempty"`
}

// domain returns what fails together with the drive.
func (r DriveRecord) domain() string {
	if r.Domain != "" {
		return r.Domain
	}
	return nodes.DeviceDomain(r.Device)
}

// at returns the drive the record names.
func (r DriveRecord) at() nodes.Drive {
	d, err := nodes.OpenDrive(r.Path)
	if err != nil {
		return nodes.UnusableDrive(r.Path, err)
	}
	return d
}

func (r *DriveRecord) encode() []byte {
	b, _ := json.Marshal(r) // a struct of plain fields always encodes
	return b
}

func decodeDriveRecord(b []byte) (DriveRecord, error) {
	var r DriveRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("decode drive record: %w", err)
	}
	if r.Num == 0 || r.ID == "" || r.Name == "" || r.Path == "" {
		return r, fmt.Errorf("decode drive record: missing fields: %w", errCorrupt)
	}
	return r, nil
}

// freeRefresh is how often a drive's free space is re-read with statfs;
// between reads it is estimated by subtracting what dhdfs wrote.
const freeRefresh = time.Second

// drive is an open (or unopenable) drive of the pool.
type drive struct {
	num uint32

	mu       sync.Mutex
	rec      DriveRecord    // guarded by mu
	store    nodes.Store    // guarded by mu; nil while offline or failed to open
	jnl      *nodes.Journal // guarded by mu; the drive's journal once opened (journalOf)
	jnlTried bool           // guarded by mu: journalOf tried to open it
	failure  error          // guarded by mu; why the drive is failed, nil if not
	failedAt time.Time      // guarded by mu; when failure was set

	free      atomic.Int64 // bytes free, estimated between statfs calls
	freeStamp atomic.Int64 // unix nanos of the last statfs
	// written estimates the bytes of the drive's store: its size at open plus
	// what placement has sent it since. It breaks ties between drives with
	// equal free space, as when several share one filesystem.
	written atomic.Int64
	// readNanos is a moving average of the drive's read latency: reads try
	// the fastest holder first, so a slow or dying disk is read last.
	readNanos atomic.Int64
}

// observeRead folds one read's latency into the drive's average.
func (d *drive) observeRead(took time.Duration) {
	for {
		old := d.readNanos.Load()
		next := int64(took)
		if old > 0 {
			next = old + (int64(took)-old)/8
		}
		if d.readNanos.CompareAndSwap(old, next) {
			return
		}
	}
}

// readOrder returns the holders to read from, fastest first. One read in
// readExplore keeps the record's order, so a drive that was slow once is
// measured again rather than shunned for good.
func (m *Manager) readOrder(holders []uint32) []uint32 {
	if len(holders) < 2 || m.reads.Add(1)%readExplore == 0 {
		return holders
	}
	lat := make(map[uint32]int64, len(holders))
	for _, num := range holders {
		if d := m.driveByNum(num); d != nil {
			lat[num] = d.readNanos.Load()
		}
	}
	order := slices.Clone(holders)
	slices.SortStableFunc(order, func(a, b uint32) int { return cmp.Compare(lat[a], lat[b]) })
	return order
}

const readExplore = 32

func (d *drive) record() DriveRecord {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.rec
}

func (d *drive) state() (DriveState, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.rec.Offline:
		return StateOffline, nil
	case d.failure != nil:
		return StateFailed, d.failure
	case d.rec.Draining:
		return StateDraining, nil
	default:
		return StateOnline, nil
	}
}

// usable returns the store if the drive is online, else nil.
func (d *drive) usable() nodes.Store {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.rec.Offline || d.failure != nil {
		return nil
	}
	return d.store
}

// fail marks the drive failed with err. It returns true the first time so
// that the caller logs once.
func (d *drive) fail(err error) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.failure != nil {
		return false
	}
	d.failure = err
	d.failedAt = time.Now()
	return true
}

// downSince returns when the drive stopped being usable, or the zero time
// if it is usable.
func (d *drive) downSince() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.rec.Offline:
		return d.rec.Since
	case d.failure != nil:
		return d.failedAt
	}
	return time.Time{}
}

// placeable reports whether new copies may go to the drive.
func (d *drive) placeable() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return !d.rec.Offline && d.failure == nil && !d.rec.Draining && d.store != nil
}

// reserve returns the bytes the drive leaves free on its filesystem.
func (d *drive) reserve() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return cmp.Or(d.rec.Reserve, DefaultReserve)
}

// freeBytes returns the drive's free space, refreshed at most every
// freeRefresh.
func (d *drive) freeBytes() int64 {
	now := time.Now().UnixNano()
	if now-d.freeStamp.Load() > int64(freeRefresh) {
		if free, _, err := d.record().at().Space(); err == nil {
			d.free.Store(free)
		}
		d.freeStamp.Store(now)
	}
	return d.free.Load()
}

// claim makes sure the drive at path belongs to this home, taking it over
// from a home recover replaced (or from none: drives from before homes
// were named). A drive another home took over is refused: this home is
// stale, and a gc here would delete that home's new chunks as orphans.
func (m *Manager) claim(at nodes.Drive, id nodes.Identity) error {
	switch {
	case id.HomeID == m.cfg.HomeID:
		return nil
	case id.HomeID == "" || slices.Contains(m.cfg.FormerHomes, id.HomeID) || m.opts.takeOver:
		id.HomeID = m.cfg.HomeID
		if err := at.SetIdentity(id); err != nil {
			return fmt.Errorf("claim drive %s for this home: %w", at.Location(), err)
		}
		return nil
	}
	return fmt.Errorf("%s is used by another home of this pool, made by 'dhdfs recover': this home (%s) is out of date and leaves the drive alone; use the recovered home: %w",
		at.Location(), m.home, ErrBadDrive)
}

// openDriveStore checks the identity of the drive directory and opens its
// chunk store.
func (m *Manager) openDriveStore(rec DriveRecord) (nodes.Store, error) {
	at := rec.at()
	id, err := at.Identity()
	if err != nil {
		return nil, err
	}
	if id.PoolID != m.cfg.PoolID || id.DriveID != rec.ID {
		return nil, fmt.Errorf("%s holds drive %s of pool %s, expected drive %s of this pool: %w",
			rec.Path, id.DriveID, id.PoolID, rec.ID, ErrBadDrive)
	}
	if err := m.claim(at, id); err != nil {
		return nil, err
	}
	st, err := at.OpenStore(nodes.Options{Logger: m.log.With("drive", rec.Name)})
	if err != nil {
		return nil, err
	}
	if m.opts.WrapStore != nil {
		st = m.opts.WrapStore(rec, st)
	}
	if m.opts.DriveTimeout > 0 {
		st = nodes.WithTimeout(st, m.opts.DriveTimeout)
	}
	return holdFor(st), nil
}

// attachDrive opens the drive's store (unless it is offline) and adds it
// to the in-memory registry, then carries out the deletes queued while it
// was away. A drive that cannot be opened is kept, failed.
func (m *Manager) attachDrive(rec DriveRecord, deletes bool) *drive {
	d := &drive{num: rec.Num, rec: rec}
	if !rec.Offline {
		s, err := m.openDriveStore(rec)
		if err != nil {
			d.failure, d.failedAt = err, time.Now()
			m.log.Warn("drive failed to open", "drive", rec.Name, "path", rec.Path, "err", err)
		}
		d.store = s
		if s != nil {
			if u, err := s.Usage(); err == nil {
				d.written.Store(u.Used)
			}
		}
	}
	m.drivesMu.Lock()
	m.drives[rec.Num] = d
	m.drivesMu.Unlock()
	if deletes {
		m.finishDrivesDeletes(d)
	}
	return d
}

// finishDrivesDeletes carries out the deletes queued for d while it was
// away, if it is usable.
func (m *Manager) finishDrivesDeletes(d *drive) {
	if d.usable() != nil {
		if _, err := m.finishDeletes(context.Background(), d); err != nil {
			m.log.Warn("pending deletes", "drive", d.record().Name, "err", err)
		}
	}
}

// driveByNum returns the drive numbered num, or nil.
func (m *Manager) driveByNum(num uint32) *drive {
	m.drivesMu.RLock()
	defer m.drivesMu.RUnlock()
	return m.drives[num]
}

// storeOf returns drive num and its store, or a nil store when the drive
// is unknown, offline or failed.
func (m *Manager) storeOf(num uint32) (*drive, nodes.Store) {
	d := m.driveByNum(num)
	if d == nil {
		return nil, nil
	}
	return d, d.usable()
}

// driveList returns the drives ordered by number.
func (m *Manager) driveList() []*drive {
	m.drivesMu.RLock()
	defer m.drivesMu.RUnlock()
	out := make([]*drive, 0, len(m.drives))
	for _, d := range m.drives {
		out = append(out, d)
	}
	sortDrives(out)
	return out
}

// driveByName finds a drive by name, id or id prefix of at least 8 digits.
func (m *Manager) driveByName(name string) (*drive, error) {
	for _, d := range m.driveList() {
		rec := d.record()
		if rec.Name == name || rec.ID == name || (len(name) >= 8 && len(name) < len(rec.ID) && rec.ID[:len(name)] == name) {
			return d, nil
		}
	}
	return nil, fmt.Errorf("drive %q: %w", name, ErrUnknownDrive)
}

// driveFailed records an I/O error from a drive: ENOSPC only makes the
// drive look full until its free space is next measured; any other error
// marks it failed.
func (m *Manager) driveFailed(d *drive, err error) {
	if errors.Is(err, syscall.ENOSPC) {
		d.free.Store(0)
		d.freeStamp.Store(time.Now().UnixNano())
		m.log.Warn("drive is full", "drive", d.record().Name)
		m.kickReclaim(d.num)
		return
	}
	if errors.Is(err, nodes.ErrClosed) || errors.Is(err, nodes.ErrBusy) {
		return // taken offline while the call ran, or briefly in maintenance
	}
	if d.fail(err) {
		m.log.Error("drive failed", "drive", d.record().Name, "err", err)
	}
}
