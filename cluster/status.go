package cluster

import (
	"cmp"
	"fmt"

	"github.com/dhdfs/dhdfs/cluster/kv"
	"github.com/dhdfs/dhdfs/nodes"
)

// Status is the pool's health at a glance.
type Status struct {
	PoolID string `json:"pool_id"`
	Home   string `json:"home"`
	// Mount is where the pool is mounted and by which process; nil when it
	// is not (the command opened the pool itself).
	Mount     *MountInfo `json:"mount"`
	Replicas  int        `json:"replicas"`
	ChunkSize int        `json:"chunk_size"`
	Hash      string     `json:"hash"`
	// Drives counts drives by state; every state is present.
	Drives map[DriveState]int `json:"drives"`
	// RawTotal and RawFree add up the filesystems under online drives,
	// each filesystem counted once however many drives share it; RawFree
	// is what new chunks can use (PoolSpace.Avail: free space less what
	// placement keeps free), as df counts it.
	RawTotal int64 `json:"raw_total_bytes"`
	RawFree  int64 `json:"raw_free_bytes"`
	// UsableFree is RawFree divided by the replication factor: roughly how
	// much more file data fits, df's "Avail".
	UsableFree int64 `json:"usable_free_bytes"`
	// StoreUsed adds up the bytes the online drives' stores occupy.
	StoreUsed int64 `json:"store_used_bytes"`
	// StoreDead is StoreUsed less the copies those drives hold: space that
	// deletes and overwrites left in the stores, which the background
	// reclaimer (or gc) gives back, plus the stores' own overhead.
	StoreDead int64 `json:"store_dead_bytes"`
	Files     int64 `json:"files"`
	Dirs      int64 `json:"directories"`
	// FileBytes is the logical size of all files.
	FileBytes int64 `json:"file_bytes"`
	Chunks    int64 `json:"chunks"`
	// ChunkBytes is the size of the distinct chunks (after deduplication).
	ChunkBytes int64 `json:"chunk_bytes"`
	Copies     int64 `json:"copies"`
	// OnlineCopies counts the copies on online drives, those StoreUsed
	// measures.
	OnlineCopies int64 `json:"online_copies"`
	// UnderReplicated counts chunks with fewer copies on online drives than
	// their files ask for; Lost, those with no copy on an online drive.
	UnderReplicated int64 `json:"under_replicated_chunks"`
	Lost            int64 `json:"lost_chunks"`
	// SharedDevice counts chunks with two copies on drives that share a
	// device, so that one disk failure takes both.
	SharedDevice int64 `json:"shared_device_chunks"`
	// AtRisk counts, per online drive, the files that would become
	// unreadable if that drive failed now: they have a chunk whose only
	// copy on an online drive is there.
	AtRisk map[string]int64 `json:"files_at_risk_by_drive"`
}

// Status computes the pool's status. It scans the metadata once.
func (m *Manager) Status() (Status, error) {
	st := Status{PoolID: m.cfg.PoolID, Home: m.home, Mount: m.mountInfo(), Replicas: m.cfg.Replicas, ChunkSize: m.cfg.ChunkSize,
		Hash:   string(cmp.Or(m.cfg.Hash, nodes.SHA256)),
		Drives: map[DriveState]int{StateOnline: 0, StateOffline: 0, StateFailed: 0, StateDraining: 0}, AtRisk: map[string]int64{}}
	online := map[uint32]bool{}
	device := map[uint32]string{}
	measured := map[uint32]bool{}
	names := map[uint32]string{}
	for _, d := range m.driveList() {
		state, _ := d.state()
		st.Drives[state]++
		rec := d.record()
		device[d.num] = rec.domain()
		names[d.num] = rec.Name
		s := d.usable()
		if s == nil {
			continue
		}
		online[d.num] = true
		st.AtRisk[rec.Name] = 0
		u, err := s.Usage()
		if err != nil {
			continue
		}
		st.StoreUsed += u.Used
		measured[d.num] = true
	}
	// The same measure as statfs, so that status and df agree.
	sp := m.Space()
	st.RawTotal, st.RawFree = sp.Total, sp.Avail
	st.UsableFree = st.RawFree / int64(m.cfg.Replicas)
	var copyBytes int64                    // of the copies on the drives measured
	soleCopy := map[nodes.ChunkID]uint32{} // chunk → the one online drive holding it
	err := m.meta.paged(func(txn kv.Reader) error {
		err := scan(txn, []byte{kInode}, false, func(k, v []byte) error {
			n, err := decodeInode(0, v)
			if err != nil {
				return fmt.Errorf("inode key %x: %w", k, err)
			}
			switch {
			case n.IsDir():
				st.Dirs++
			case n.IsRegular():
				st.Files++
				st.FileBytes += n.Size
			}
			return nil
		})
		if err != nil {
			return err
		}
		err = scan(txn, []byte{kChunk}, false, func(k, v []byte) error {
			c, err := decodeChunkRecord(v)
			if err != nil {
				return fmt.Errorf("chunk key %x: %w", k, err)
			}
			if c.Refs == 0 {
				return nil
			}
			st.Chunks++
			st.ChunkBytes += int64(c.Size)
			st.Copies += int64(len(c.Holders))
			live := 0
			devs := map[string]bool{}
			shared := false
			var last uint32
			for _, h := range c.Holders {
				if online[h] {
					live++
					last = h
				}
				if measured[h] {
					copyBytes += int64(c.Size)
				}
				if devs[device[h]] {
					shared = true
				}
				devs[device[h]] = true
			}
			st.OnlineCopies += int64(live)
			if live < int(max(c.Want, 1)) {
				st.UnderReplicated++
			}
			if live == 0 {
				st.Lost++
			}
			if shared {
				st.SharedDevice++
			}
			if live == 1 {
				var id nodes.ChunkID
				copy(id[:], k[1:])
				soleCopy[id] = last
			}
			return nil
		})
		if err != nil || len(soleCopy) == 0 {
			return err
		}
		risky := map[uint32]map[uint64]bool{}
		return scanSlots(txn, nil, func(ino Ino, _ int64, ls layers) error {
			for _, ref := range ls.refs() {
				if h, ok := soleCopy[ref.ID]; ok {
					if risky[h] == nil {
						risky[h] = map[uint64]bool{}
					}
					if !risky[h][uint64(ino)] {
						risky[h][uint64(ino)] = true
						st.AtRisk[names[h]]++
					}
				}
			}
			return nil
		})
	})
	if err != nil {
		return st, fmt.Errorf("status: %w", err)
	}
	st.StoreDead = max(st.StoreUsed-copyBytes, 0)
	return st, nil
}

// ChunkLocation says where one chunk of a file is stored.
type ChunkLocation struct {
	Index int64  `json:"index"`
	ID    string `json:"id"`
	Size  int    `json:"size"`
	Want  int    `json:"want"`
	// Drives names the drives holding a copy, in read order, and States
	// says what state each is in ("removed" for a drive no longer in the
	// pool).
	Drives []string     `json:"drives"`
	States []DriveState `json:"states"`
	// Online counts the copies on online drives.
	Online int `json:"online"`
}

// FileStat is an inode with what `dhdfs stat` adds: the effective
// replication factor and where each chunk is.
type FileStat struct {
	Inode    Inode
	Replicas int
	Chunks   []ChunkLocation
}

// StatPath describes the file at p, with chunk locations if chunks is set.
func (m *Manager) StatPath(p string, chunks bool) (FileStat, error) {
	n, err := m.Resolve(p)
	if err != nil {
		return FileStat{}, err
	}
	fs := FileStat{Inode: n, Replicas: m.wantFor(&n)}
	if !chunks || !n.IsRegular() {
		return fs, nil
	}
	fs.Chunks, err = m.ChunkLocations(n.Ino)
	return fs, err
}

// ChunkLocations lists the chunks of ino with the drives holding each.
func (m *Manager) ChunkLocations(ino Ino) ([]ChunkLocation, error) {
	slots, err := m.fileSlots(ino)
	if err != nil {
		return nil, err
	}
	out := make([]ChunkLocation, 0, len(slots))
	err = m.meta.view(func(txn kv.Reader) error {
		for _, s := range slots {
			// One line per chunk a slot uses, however many pieces of it.
			seen := map[nodes.ChunkID]bool{}
			for _, ref := range s.Layers.refs() {
				if seen[ref.ID] {
					continue
				}
				seen[ref.ID] = true
				loc, err := m.chunkLocation(txn, s.Idx, ref)
				if err != nil {
					return err
				}
				out = append(out, loc)
			}
		}
		return nil
	})
	return out, err
}

// chunkLocation describes chunk ref, used at slot idx, and its copies.
func (m *Manager) chunkLocation(txn kv.Reader, idx int64, ref ChunkRef) (ChunkLocation, error) {
	rec, _, err := getChunkRecord(txn, ref.ID)
	if err != nil {
		return ChunkLocation{}, err
	}
	loc := ChunkLocation{Index: idx, ID: ref.ID.String(), Size: ref.Size, Want: int(rec.Want), Drives: []string{}, States: []DriveState{}}
	for _, h := range rec.Holders {
		name, state := fmt.Sprintf("#%d", h), DriveState("removed")
		if d := m.driveByNum(h); d != nil {
			name = d.record().Name
			state, _ = d.state()
			if d.usable() != nil {
				loc.Online++
			}
		}
		loc.Drives = append(loc.Drives, name)
		loc.States = append(loc.States, state)
	}
	return loc, nil
}
