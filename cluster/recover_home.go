package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/dhdfs/dhdfs/cluster/kv"
	"github.com/dhdfs/dhdfs/nodes"
)

// RebuildReport says what RebuildHome restored.
type RebuildReport struct {
	Pool     string `json:"pool_id"`
	Drive    string `json:"drive"`
	Segments int    `json:"segments"`
	// Through is when the last loaded segment was written: changes made
	// after it are not in the rebuilt metadata.
	Through time.Time  `json:"through"`
	Fsck    FsckReport `json:"fsck"`
	// MovedAside is where ReplaceHome put home's old metadata, config and
	// mirror state (empty when home held no pool).
	MovedAside string `json:"moved_aside,omitempty"`
}

// RebuildHome rebuilds a lost home in home from the metadata mirror on the
// drive at drivePath: the pool config and the chain of metadata backups
// are loaded into a new meta store, the drive's path is updated (it may
// have moved), and the rebuilt pool is opened as after a crash (references
// recounted, copies no record names deleted) and checked with fsck
// --repair, which also drops copies the records name but the drives lost.
// The other drives are found at their recorded paths. A home that holds
// a pool is refused with ErrPoolExists (see ReplaceHome).
func RebuildHome(ctx context.Context, drivePath, home string, opts Options, progress ProgressFunc) (RebuildReport, error) {
	return rebuildHome(ctx, drivePath, home, false, opts, progress)
}

// ReplaceHome is RebuildHome for a home that holds the pool already,
// damaged or not: its metadata directory is first moved aside to
// HOME/meta.damaged-TIMESTAMP (with the pool config and the mirror state
// in it), never deleted. It refuses a pool that is in use (mounted) and a
// drive of another pool than the one home holds.
func ReplaceHome(ctx context.Context, drivePath, home string, opts Options, progress ProgressFunc) (RebuildReport, error) {
	return rebuildHome(ctx, drivePath, home, true, opts, progress)
}

func rebuildHome(ctx context.Context, drivePath, home string, replace bool, opts Options, progress ProgressFunc) (RebuildReport, error) {
	var rep RebuildReport
	real, err := resolveDrive(drivePath)
	if err != nil {
		return rep, fmt.Errorf("%s: %w", drivePath, err)
	}
	at, err := nodes.OpenDrive(real)
	if err != nil {
		return rep, err
	}
	id, err := at.Identity()
	if err != nil {
		return rep, err
	}
	area := at.Mirror()
	var cfg PoolConfig
	b, err := area.Read(configFile)
	if err == nil {
		err = json.Unmarshal(b, &cfg)
	}
	if err != nil {
		return rep, fmt.Errorf("%s has no metadata mirror: %w", real, err)
	}
	if cfg.PoolID != id.PoolID {
		return rep, fmt.Errorf("%s: mirror of pool %s on a drive of pool %s: %w", real, cfg.PoolID, id.PoolID, ErrBadDrive)
	}
	segs, err := listSegments(area)
	if err != nil {
		return rep, fmt.Errorf("read metadata mirror: %w", err)
	}
	chain, chainErr := chainFrom(segs)
	if cfg.Meta == "" && chainErr != nil {
		return rep, fmt.Errorf("metadata mirror on %s: %w", real, chainErr)
	}
	// A pool whose metadata lives in an engine of its own has lost only
	// its config with home, unless the engine lost the pool too: then the
	// mirror fills the engine.
	var meta *metaDB
	if cfg.Meta != "" {
		meta, err = openEngineMeta(cfg.Meta, true)
		switch {
		case errors.Is(err, ErrPoolExists):
			meta, err = nil, nil
		case err != nil:
			return rep, err
		case chainErr != nil:
			meta.close()
			return rep, fmt.Errorf("the metadata engine %s holds no pool, and the mirror on %s: %w", cfg.Meta, real, chainErr)
		}
	}
	// Home is touched only once the mirror is known to be usable.
	if replace {
		rep.MovedAside, err = moveHomeAside(home, cfg.PoolID, real)
	}
	var lock *poolLock
	if err == nil {
		lock, err = newHome(home)
	}
	if err != nil {
		if meta != nil {
			meta.close()
		}
		return rep, err
	}
	// A new home: it takes the drives over as it opens them, so the old
	// one, should it still exist, no longer uses them.
	if cfg.HomeID != "" {
		cfg.FormerHomes = append(cfg.FormerHomes, cfg.HomeID)
	}
	cfg.HomeID = nodes.NewID()
	if cfg.Meta == "" {
		meta, err = openMeta(filepath.Join(home, metaDir), nil)
	}
	loaded := 0
	if err == nil && meta != nil {
		loaded, err = loadChain(meta, area, chain, id, real)
	}
	if err == nil {
		err = writeConfig(home, cfg)
	}
	lock.release()
	if err != nil {
		return rep, err
	}
	rep.Pool, rep.Segments = cfg.PoolID, loaded
	if loaded > 0 {
		if t, err := area.ModTime(chain[loaded-1].name); err == nil {
			rep.Through = t
		}
	}
	opts.takeOver = true
	m, err := Open(home, opts)
	if err != nil {
		return rep, err
	}
	if d := m.driveByID(id.DriveID); d != nil {
		rep.Drive = d.record().Name
	}
	rep.Fsck, err = m.Fsck(ctx, true, progress)
	if cerr := m.Close(); err == nil {
		err = cerr
	}
	return rep, err
}

// moveHomeAside moves the pool in home out of the way of a rebuild: its
// metadata directory becomes HOME/meta.damaged-TIMESTAMP, and the pool
// config and mirror state go into it. Home then holds no pool. It returns
// the new directory, or "" when home held nothing to move. The config goes
// second: a crash in between leaves a config without metadata, which Open
// reports as damaged, and running this again finishes the job.
func moveHomeAside(home, poolID, drive string) (string, error) {
	entries, err := os.ReadDir(home)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read home: %w", err)
	}
	lock, err := lockPool(home)
	if err != nil {
		return "", err // in use: a mount's metadata is never replaced under it
	}
	defer lock.release()
	var old PoolConfig
	if err := nodes.ReadJSONFile(filepath.Join(home, configFile), &old); err == nil && old.PoolID != "" && old.PoolID != poolID {
		return "", fmt.Errorf("%s holds pool %s, but %s is a drive of pool %s: %w", home, old.PoolID, drive, poolID, ErrBadDrive)
	}
	present := map[string]bool{}
	for _, e := range entries {
		present[e.Name()] = true
	}
	if !present[metaDir] && !present[configFile] && !present[mirrorState] {
		return "", nil
	}
	aside := filepath.Join(home, metaDir+".damaged-"+time.Now().Format("20060102-150405"))
	for i := 2; ; i++ {
		if _, err := os.Lstat(aside); errors.Is(err, os.ErrNotExist) {
			break
		}
		aside = fmt.Sprintf("%s.damaged-%s-%d", filepath.Join(home, metaDir), time.Now().Format("20060102-150405"), i)
	}
	if present[metaDir] {
		err = os.Rename(filepath.Join(home, metaDir), aside)
	} else {
		err = os.Mkdir(aside, 0o700)
	}
	for _, name := range []string{configFile, mirrorState} {
		if err == nil && present[name] {
			err = os.Rename(filepath.Join(home, name), filepath.Join(aside, name))
		}
	}
	if err != nil {
		return "", fmt.Errorf("move the old metadata aside: %w", err)
	}
	return aside, nil
}

// loadChain loads the mirror's segments into meta, a new store, up to the
// first damaged one, points the drive record of the drive they came from
// at its current path, and closes meta. It returns how many it loaded.
func loadChain(meta *metaDB, area nodes.FileArea, chain []segment, id nodes.Identity, drivePath string) (int, error) {
	loaded := 0
	var at uint64 // the last transaction loaded
	for i, s := range chain {
		b, err := area.Read(s.name)
		if err == nil {
			err = decodeSegment(b, func(batch metaBatch) error {
				if batch.Seq != 0 && batch.Seq <= at {
					return nil // a full dump that followed held it already
				}
				at = max(at, batch.Seq)
				return meta.load(batch.Muts)
			})
		}
		if err != nil && i > 0 && !errors.Is(err, errLoad) {
			break // a damaged increment ends the chain: load what precedes it
		}
		if err != nil {
			meta.close()
			return 0, fmt.Errorf("load metadata mirror %s: %w", s.name, err)
		}
		loaded++
	}
	err := meta.loaded(at)
	if err == nil {
		err = meta.update(func(txn kv.Txn) error {
			// Opened as after a crash: references recounted, orphans swept.
			if err := del(txn, cleanKey); err != nil {
				return err
			}
			var key []byte
			var found DriveRecord
			err := scan(txn, []byte{kDrive}, false, func(k, v []byte) error {
				if rec, err := decodeDriveRecord(v); err == nil && rec.ID == id.DriveID {
					key, found = slices.Clone(k), rec
					return errStop
				}
				return nil
			})
			if err != nil || key == nil {
				return err
			}
			found.Path = drivePath
			return set(txn, key, found.encode())
		})
	}
	if err == nil {
		err = meta.sync()
	}
	if cerr := meta.close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("rebuild metadata: %w", err)
	}
	return loaded, nil
}

// driveByID returns the drive with the given identity, or nil.
func (m *Manager) driveByID(id string) *drive {
	for _, d := range m.driveList() {
		if d.record().ID == id {
			return d
		}
	}
	return nil
}
