package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/dhdfs/dhdfs/cluster/kv"
	"github.com/dhdfs/dhdfs/cluster/mountinfo"
	"github.com/dhdfs/dhdfs/nodes"
)

// DriveInfo is a drive as `node list` shows it.
type DriveInfo struct {
	Name   string            `json:"name"`
	ID     string            `json:"id"`
	Path   string            `json:"path"`
	State  DriveState        `json:"state"`
	Reason string            `json:"reason,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	// Chunks is the number of chunk copies the pool has placed on the drive.
	Chunks int64 `json:"chunks"`
	// PendingDeletes counts copies on the drive that no record names any
	// more, to be deleted as soon as it is usable (see pending_delete.go).
	PendingDeletes int64 `json:"pending_deletes,omitempty"`
	// Used is the bytes the drive's store occupies; -1 when unknown.
	Used int64 `json:"used_bytes"`
	// Free and Total describe the filesystem under the drive; -1 when unknown.
	Free   int64  `json:"free_bytes"`
	Total  int64  `json:"total_bytes"`
	Device string `json:"device"`
	// Verified is when a scrub last checked every chunk on the drive.
	Verified *time.Time `json:"last_verified,omitempty"`
	// Reserve is what dhdfs leaves free on the drive's filesystem.
	Reserve int64 `json:"reserve_bytes"`
}

// AddDriveOptions are the optional settings of a new drive.
type AddDriveOptions struct {
	Name   string
	Labels map[string]string
	// Reserve is what to leave free on the drive's filesystem: 0 for
	// DefaultReserve, else at least MinReserve.
	Reserve int64
}

// checkReserve refuses a reserve too small for Badger to work in.
func checkReserve(n int64) error {
	if n != 0 && n < MinReserve {
		return fmt.Errorf("reserve of %d bytes is less than the %d MiB a drive needs to compact its store: %w", n, MinReserve>>20, ErrInvalid)
	}
	return nil
}

var driveNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// within reports whether path is dir or lies below it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// dhdfsMountOf returns the mount point of the dhdfs mount holding path,
// if the innermost mount holding it is one.
func dhdfsMountOf(path string) (string, bool) {
	mounts, err := mountinfo.Read()
	if err != nil {
		return "", false
	}
	m, ok := mountinfo.Innermost(mounts, path)
	return m.MountPoint, ok && m.FSType == "fuse.dhdfs"
}

// resolvePath returns the absolute, symlink-free form of path.
func resolvePath(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(abs)
}

// driveLocation checks that path may become a new drive and returns its
// location as the pool records it: for a directory, its real path, which
// must be a writable directory that overlaps neither home, another drive
// nor a dhdfs mount; a URL (mem://, a later network drive) as given.
func (m *Manager) driveLocation(path string) (string, error) {
	bad := func(format string, a ...any) (string, error) {
		return "", fmt.Errorf("%s: %s: %w", path, fmt.Sprintf(format, a...), ErrBadDrive)
	}
	if strings.Contains(path, "://") {
		for _, d := range m.driveList() {
			if rec := d.record(); rec.Path == path {
				return bad("already in the pool as drive %s", rec.Name)
			}
		}
		return path, nil
	}
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return bad("no such directory")
	case err != nil:
		return "", fmt.Errorf("%s: %w", path, err)
	case !st.IsDir():
		return bad("not a directory")
	}
	real, err := resolvePath(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	home, err := resolvePath(m.home)
	if err != nil {
		return "", fmt.Errorf("resolve home: %w", err)
	}
	if within(real, home) || within(home, real) {
		return bad("overlaps the pool's home %s", m.home)
	}
	// A drive inside a dhdfs mount would store the pool in itself (or in
	// another pool), and deadlock or lose everything with that mount.
	if mnt, ok := dhdfsMountOf(real); ok {
		return bad("lies inside the dhdfs mount at %s", mnt)
	}
	for _, d := range m.driveList() {
		rec := d.record()
		if rec.Path == real {
			return bad("already in the pool as drive %s", rec.Name)
		}
		if within(real, rec.Path) || within(rec.Path, real) {
			return bad("overlaps drive %s at %s", rec.Name, rec.Path)
		}
	}
	if err := unixAccessRW(real); err != nil {
		return bad("not writable: %v", err)
	}
	return real, nil
}

// resolveDrive returns how the pool names the drive at path: a
// directory's real path, a URL as given.
func resolveDrive(path string) (string, error) {
	if strings.Contains(path, "://") {
		return path, nil
	}
	return resolvePath(path)
}

// AddDrive adds the directory path to the pool as a new drive and returns
// it, with warnings the user should see (such as sharing a disk with
// another drive). It changes nothing when it returns an error.
func (m *Manager) AddDrive(path string, o AddDriveOptions) (DriveInfo, []string, error) {
	m.addMu.Lock()
	defer m.addMu.Unlock()
	bad := func(format string, a ...any) (DriveInfo, []string, error) {
		return DriveInfo{}, nil, fmt.Errorf("%s: %s: %w", path, fmt.Sprintf(format, a...), ErrBadDrive)
	}
	real, err := m.driveLocation(path)
	if err != nil {
		return DriveInfo{}, nil, err
	}
	if err := checkReserve(o.Reserve); err != nil {
		return DriveInfo{}, nil, err
	}
	if o.Name != "" && !driveNameRE.MatchString(o.Name) {
		return bad("drive name %q must be 1-64 letters, digits, '.', '_' or '-'", o.Name)
	}
	for _, d := range m.driveList() {
		if rec := d.record(); o.Name != "" && rec.Name == o.Name {
			return bad("a drive named %s already exists", o.Name)
		}
	}
	at, err := nodes.OpenDrive(real)
	if err != nil {
		return DriveInfo{}, nil, err
	}
	if id, err := at.Identity(); err == nil {
		if id.PoolID != m.cfg.PoolID {
			return bad("belongs to another pool (%s)", id.PoolID)
		}
		return bad("was a drive of this pool; empty it before adding it again")
	} else if !errors.Is(err, nodes.ErrNotDrive) {
		return DriveInfo{}, nil, err
	}
	domain, err := at.FailureDomain()
	if err != nil {
		return DriveInfo{}, nil, err
	}

	rec := DriveRecord{ID: nodes.NewID(), Path: real, Labels: o.Labels, Domain: domain,
		Added: time.Now().UTC().Truncate(time.Second), Name: o.Name, Reserve: o.Reserve}
	var warnings, sharing []string
	for _, d := range m.driveList() {
		if other := d.record(); other.domain() == domain {
			sharing = append(sharing, other.Name)
		}
	}
	if len(sharing) > 0 {
		warnings = append(warnings, fmt.Sprintf("%s is on device %s like drive %s: copies on drives that share a device fail together",
			real, domain, strings.Join(sharing, ", ")))
	}
	reserve := cmp.Or(o.Reserve, DefaultReserve)
	if free, _, err := at.Space(); err == nil && free < reserve+smallDrive {
		warnings = append(warnings, fmt.Sprintf("%s has %d MiB free and dhdfs leaves %d MiB free on it (--reserve): it will hold little or nothing until its filesystem has more room",
			real, free>>20, reserve>>20))
	}
	// Number the drive first, so a default name can use the number.
	err = m.meta.update(func(txn kv.Txn) error {
		n, err := counter(txn, driveCounterKey, 1)
		rec.Num = uint32(n)
		return err
	})
	if err != nil {
		return DriveInfo{}, nil, fmt.Errorf("add drive: %w", err)
	}
	if rec.Name == "" {
		rec.Name = fmt.Sprintf("d%d", rec.Num)
	}
	if err := at.SetIdentity(nodes.Identity{PoolID: m.cfg.PoolID, DriveID: rec.ID, Created: rec.Added, HomeID: m.cfg.HomeID}); err != nil {
		return DriveInfo{}, nil, fmt.Errorf("add drive: %w", err)
	}
	undo := func() {
		if err := at.Destroy(); err != nil {
			m.log.Warn("undo adding a drive", "path", real, "err", err)
		}
	}
	s, err := m.openDriveStore(rec)
	if err != nil {
		undo()
		return DriveInfo{}, nil, fmt.Errorf("add drive: %w", err)
	}
	err = m.meta.update(func(txn kv.Txn) error { return set(txn, driveKey(rec.Num), rec.encode()) })
	if err == nil {
		err = m.meta.sync()
	}
	if err != nil {
		s.Close()
		undo()
		return DriveInfo{}, nil, fmt.Errorf("add drive: %w", err)
	}
	d := &drive{num: rec.Num, rec: rec, store: s}
	m.drivesMu.Lock()
	m.drives[rec.Num] = d
	m.drivesMu.Unlock()
	m.log.Info("drive added", "drive", rec.Name, "path", rec.Path)
	m.kickHealer()
	return m.driveInfo(d), warnings, nil
}

// Drives lists every drive of the pool with its state and usage.
func (m *Manager) Drives() ([]DriveInfo, error) {
	counts := map[uint32]int64{}
	err := m.meta.view(func(txn kv.Reader) error {
		return scan(txn, []byte{kHolding}, true, func(k, _ []byte) error {
			if len(k) >= 5 {
				counts[uint32(k[1])<<24|uint32(k[2])<<16|uint32(k[3])<<8|uint32(k[4])]++
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("count chunks per drive: %w", err)
	}
	pending, err := m.pendingDeletes()
	if err != nil {
		return nil, err
	}
	var out []DriveInfo
	for _, d := range m.driveList() {
		info := m.driveInfo(d)
		info.Chunks = counts[d.num]
		info.PendingDeletes = pending[d.num]
		out = append(out, info)
	}
	return out, nil
}

func (m *Manager) driveInfo(d *drive) DriveInfo {
	rec := d.record()
	state, reason := d.state()
	info := DriveInfo{Name: rec.Name, ID: rec.ID, Path: rec.Path, State: state, Labels: rec.Labels,
		Used: -1, Free: -1, Total: -1, Device: rec.domain(), Reserve: d.reserve()}
	if reason != nil {
		info.Reason = reason.Error()
	}
	if !rec.Verified.IsZero() {
		v := rec.Verified
		info.Verified = &v
	}
	if s := d.usable(); s != nil {
		if u, err := s.Usage(); err == nil {
			info.Used, info.Free, info.Total = u.Used, u.Free, u.Total
		}
	} else if free, total, err := rec.at().Space(); err == nil {
		info.Free, info.Total = free, total
	}
	return info
}

// SetDriveOffline takes a drive offline (as if unplugged: dhdfs stops
// reading and writing it) or brings it back online. The choice persists.
func (m *Manager) SetDriveOffline(name string, offline bool) (DriveInfo, error) {
	d, err := m.driveByName(name)
	if err != nil {
		return DriveInfo{}, err
	}
	d.mu.Lock()
	rec := d.rec
	if rec.Offline != offline {
		rec.Since = time.Now().UTC()
	}
	rec.Offline = offline
	d.mu.Unlock()
	err = m.meta.update(func(txn kv.Txn) error { return set(txn, driveKey(rec.Num), rec.encode()) })
	if err == nil {
		err = m.meta.sync()
	}
	if err != nil {
		return DriveInfo{}, fmt.Errorf("set drive %s state: %w", rec.Name, err)
	}
	d.mu.Lock()
	d.rec = rec
	reopen := !offline && (d.store == nil || d.failure != nil)
	var old nodes.Store
	if offline || reopen {
		old, d.store = d.store, nil
	}
	d.mu.Unlock()
	if old != nil {
		if err := old.Sync(); err != nil {
			m.log.Warn("sync before closing drive failed", "drive", rec.Name, "err", err)
		}
		if err := old.Close(); err != nil {
			m.log.Warn("close drive", "drive", rec.Name, "err", err)
		}
	}
	if reopen {
		// Coming online re-checks the drive from scratch.
		s, err := m.openDriveStore(rec)
		d.mu.Lock()
		d.store, d.failure = s, err
		d.mu.Unlock()
		if err != nil {
			m.log.Warn("drive failed to open", "drive", rec.Name, "err", err)
		}
	}
	m.log.Info("drive state changed", "drive", rec.Name, "offline", offline)
	if !offline {
		// Before returning, so that the command's caller sees the drive
		// clean of what was deleted while it was away.
		if _, err := m.finishDeletes(context.Background(), d); err != nil {
			m.log.Warn("pending deletes", "drive", rec.Name, "err", err)
		}
		m.kickHealer()
	}
	return m.driveInfo(d), nil
}

// SetDriveReserve changes what dhdfs leaves free on a drive's filesystem
// (0: DefaultReserve). A larger reserve takes effect at once: new chunks
// go elsewhere, and the reclaimer gives back dead space if the drive is
// now short of it. Chunks already there stay.
func (m *Manager) SetDriveReserve(name string, reserve int64) (DriveInfo, error) {
	if err := checkReserve(reserve); err != nil {
		return DriveInfo{}, err
	}
	d, err := m.driveByName(name)
	if err != nil {
		return DriveInfo{}, err
	}
	if err := m.updateDriveRecord(d, func(r *DriveRecord) { r.Reserve = reserve }); err != nil {
		return DriveInfo{}, err
	}
	m.log.Info("drive reserve changed", "drive", name, "bytes", cmp.Or(reserve, DefaultReserve))
	m.kickReclaim(d.num)
	return m.driveInfo(d), nil
}

// DriveStates returns each drive's state by name, cheaply (for metrics).
func (m *Manager) DriveStates() map[string]DriveState {
	out := map[string]DriveState{}
	for _, d := range m.driveList() {
		st, _ := d.state()
		out[d.record().Name] = st
	}
	return out
}

// updateDriveRecord changes a drive's persistent record.
func (m *Manager) updateDriveRecord(d *drive, change func(*DriveRecord)) error {
	d.mu.Lock()
	rec := d.rec
	change(&rec)
	d.mu.Unlock()
	err := m.meta.update(func(txn kv.Txn) error { return set(txn, driveKey(rec.Num), rec.encode()) })
	if err == nil {
		err = m.meta.sync()
	}
	if err != nil {
		return fmt.Errorf("update drive %s: %w", rec.Name, err)
	}
	d.mu.Lock()
	d.rec = rec
	d.mu.Unlock()
	return nil
}

// RemoveReport says what removing a drive left under-replicated.
type RemoveReport struct {
	Name string `json:"name"`
	// Chunks the drive still held; of those, UnderReplicated now have fewer
	// copies than wanted and Lost have no copy at all; Files is the number
	// of files with such chunks.
	Chunks          int64 `json:"chunks"`
	UnderReplicated int64 `json:"under_replicated"`
	Lost            int64 `json:"lost"`
	Files           int64 `json:"files"`
}

// RemoveDrive takes a drive out of the pool. A drive that still holds
// chunks is refused unless force is set; then its copies are forgotten
// (they stay on the disk, untouched) and the report says what became
// under-replicated, for the healer to fix. An emptied drive's store and
// identity are deleted so the directory can be reused.
func (m *Manager) RemoveDrive(name string, force bool) (RemoveReport, error) {
	m.healMu.Lock()
	defer m.healMu.Unlock()
	d, err := m.driveByName(name)
	if err != nil {
		return RemoveReport{}, err
	}
	rec := d.record()
	rep := RemoveReport{Name: rec.Name}
	ids, err := m.holdingsOf(d.num)
	if err != nil {
		return rep, err
	}
	rep.Chunks = int64(len(ids))
	if len(ids) > 0 && !force {
		return rep, fmt.Errorf("drive %s still holds %d chunks: drain it first (dhdfs node drain %s), or remove it with --force and let the healer re-create its copies",
			rec.Name, len(ids), rec.Name)
	}
	affected := map[nodes.ChunkID]bool{}
	now := time.Now()
	for start := 0; start < len(ids); start += m.meta.batch {
		batch := ids[start:min(start+m.meta.batch, len(ids))]
		for _, id := range batch {
			mu := &m.stripes[id[0]]
			mu.Lock()
			r, ok, err := m.chunkRecordOf(id)
			if err == nil && ok {
				rest := slices.DeleteFunc(slices.Clone(r.Holders), func(h uint32) bool { return h == d.num })
				cs := m.classify(id, rest, now)
				if r.Refs > 0 && len(cs.healthy)+len(cs.grace) < int(max(r.Want, 1)) {
					rep.UnderReplicated++
					affected[id] = true
					if len(rest) == 0 {
						rep.Lost++
					}
				}
				err = m.setHolders(id, nil, []uint32{d.num}, 0)
			}
			mu.Unlock()
			if err != nil {
				return rep, err
			}
		}
	}
	if len(affected) > 0 {
		files := map[uint64]bool{}
		_ = m.meta.view(func(txn kv.Reader) error {
			return scanSlots(txn, func([]byte, Ino, int64) {}, func(ino Ino, _ int64, ls layers) error {
				for _, ref := range ls.refs() {
					if affected[ref.ID] {
						files[uint64(ino)] = true
					}
				}
				return nil
			})
		})
		rep.Files = int64(len(files))
	}
	if err := m.meta.update(func(txn kv.Txn) error { return del(txn, driveKey(d.num)) }); err != nil {
		return rep, err
	}
	if err := m.meta.sync(); err != nil {
		return rep, err
	}
	m.drivesMu.Lock()
	delete(m.drives, d.num)
	m.drivesMu.Unlock()
	d.mu.Lock()
	s := d.store
	d.store = nil
	d.mu.Unlock()
	if s != nil && len(ids) > 0 {
		// Likely a dead drive, whose store may take CloseTimeout to give
		// up: do not make the caller wait for it.
		go s.Close()
	} else if s != nil {
		s.Close()
	}
	if len(ids) == 0 {
		// Nothing of the pool is left on it: free it for reuse.
		if err := rec.at().Destroy(); err != nil {
			m.log.Warn("empty removed drive", "drive", rec.Name, "err", err)
		}
	} else if id, err := rec.at().Identity(); err == nil && id.DriveID == rec.ID {
		// Keep the data, but mark it as no longer a drive of this pool.
		if err := rec.at().Retire(); err != nil {
			m.log.Warn("retire removed drive", "drive", rec.Name, "err", err)
		}
	}
	m.log.Info("drive removed", "drive", rec.Name, "under_replicated", rep.UnderReplicated)
	m.kickHealer()
	return rep, nil
}
