package cluster

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"syscall"

	"github.com/dhdfs/dhdfs/cluster/kv"
	"github.com/dhdfs/dhdfs/nodes"
)

// FsckProblem is one inconsistency fsck found.
type FsckProblem struct {
	Kind     string `json:"kind"`
	What     string `json:"what"`
	Repaired bool   `json:"repaired"`
}

// FsckReport is what Fsck checked and found.
type FsckReport struct {
	Inodes          int           `json:"inodes"`
	Entries         int           `json:"entries"`
	Chunks          int           `json:"chunks"`
	Copies          int           `json:"copies"`
	UnderReplicated int           `json:"under_replicated"`
	Problems        []FsckProblem `json:"problems"`
}

// Unrepaired counts the problems left.
func (r *FsckReport) Unrepaired() int {
	n := 0
	for _, p := range r.Problems {
		if !p.Repaired {
			n++
		}
	}
	return n
}

// Problem kinds, as reported.
const (
	ProblemBadRecord     = "bad record"     // a record that does not decode
	ProblemDanglingEntry = "dangling entry" // a name for a missing inode, or in a missing directory
	ProblemEntryType     = "entry type"     // a name whose type differs from its inode's
	ProblemNlink         = "link count"     // an inode's nlink differs from its names
	ProblemLostInode     = "lost inode"     // an inode with no name (moved to /lost+found)
	ProblemDirNames      = "directory names"
	ProblemStraySlot     = "stray chunk slot"     // a chunk slot of no regular file, or past its end
	ProblemLostChunk     = "lost chunk"           // a file chunk with no record or no copy left
	ProblemRefcount      = "reference count"      // a chunk's count differs from the slots naming it
	ProblemMissingCopy   = "missing copy"         // a drive named as holder lacks the copy
	ProblemUnknownDrive  = "unknown drive"        // a holder that is not a drive of the pool
	ProblemHoldingIndex  = "holding index"        // the reverse index disagrees with the records
	ProblemOrphanCopy    = "orphan copy"          // a drive holds a copy no record names
	ProblemStoredBytes   = "stored bytes"         // a file's stored bytes (st_blocks) differ from its chunks
	ProblemPastEnd       = "bytes past the end"   // a file's last chunk holds bytes past its size
	ProblemInodeCount    = "inode count"          // the count of inodes (df -i) differs from the inodes
	ProblemStaleDelete   = "stale pending delete" // a pending delete for a drive no longer in the pool
)

// LostFound is the directory fsck --repair gives lost inodes names in.
const LostFound = "lost+found"

type fsckInode struct {
	Inode
	bad     bool
	names   []dentryAt // names pointing at it
	subdirs uint32
	stored  int64 // bytes in the file's chunk slots
}

type dentryAt struct {
	parent Ino
	name   string
}

type fsckChunk struct {
	rec   chunkRecord
	slots uint64
	bad   bool
	user  string // a file chunk that uses it, for reports
}

// fsck is one run's state: a snapshot of the metadata and what was found.
type fsck struct {
	m       *Manager
	repair  bool
	rep     FsckReport
	inodes  map[Ino]*fsckInode
	chunks  map[nodes.ChunkID]*fsckChunk
	holding map[uint32]map[nodes.ChunkID]bool // reverse index entries
	orphans map[Ino]bool                      // inodes with no name, to be freed
	count   uint64                            // the inode count kept for df -i
	fixes   []func(txn kv.Txn) error          // repairs of the metadata
	later   []func()                          // repairs on the drives, after the metadata's
}

// Fsck checks the pool's metadata against itself and the drives: names
// against inodes, link counts, chunk slots against chunk records,
// reference counts against slots, and each record's holders against what
// the drives hold. With repair it fixes what it can: dangling names go,
// counts are set to what was counted, lost inodes get a name in
// /lost+found, records stop naming copies that are gone (healing makes new
// ones), and copies no record names are deleted. A chunk with no copy left
// cannot be repaired: its file is reported.
//
// It wants a pool no one else is changing: the CLI runs it only on a pool
// that is not mounted.
func (m *Manager) Fsck(ctx context.Context, repair bool, progress ProgressFunc) (FsckReport, error) {
	m.healMu.Lock()
	defer m.healMu.Unlock()
	// Finish what waits for a sync round first: chunks released but not
	// deleted yet, slots not settled yet. They are not problems.
	if err := m.settleAll(); err != nil {
		return FsckReport{}, fmt.Errorf("fsck: %w", err)
	}
	f := &fsck{m: m, repair: repair, inodes: map[Ino]*fsckInode{}, chunks: map[nodes.ChunkID]*fsckChunk{},
		holding: map[uint32]map[nodes.ChunkID]bool{}, orphans: map[Ino]bool{}}
	if err := m.meta.view(f.load); err != nil {
		return f.rep, fmt.Errorf("fsck: read metadata: %w", err)
	}
	f.checkNames()
	f.checkChunks()
	if err := f.checkDrives(ctx, progress); err != nil {
		return f.rep, err
	}
	if repair && len(f.fixes) > 0 {
		for start := 0; start < len(f.fixes); start += m.meta.batch {
			batch := f.fixes[start:min(start+m.meta.batch, len(f.fixes))]
			err := m.meta.update(func(txn kv.Txn) error {
				for _, fix := range batch {
					if err := fix(txn); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return f.rep, fmt.Errorf("fsck: repair: %w", err)
			}
		}
		zero, err := m.zeroChunks()
		if err != nil {
			return f.rep, err
		}
		m.collect(zero)
		if err := m.meta.sync(); err != nil {
			return f.rep, err
		}
	}
	for _, fix := range f.later {
		fix()
	}
	return f.rep, nil
}

// problem records a problem; fix, if not nil, repairs it in the metadata
// when repairing. Problems without a fix are reported unrepaired.
func (f *fsck) problem(kind, what string, fix func(txn kv.Txn) error) {
	repaired := f.repair && fix != nil
	if repaired {
		f.fixes = append(f.fixes, fix)
	}
	f.rep.Problems = append(f.rep.Problems, FsckProblem{Kind: kind, What: what, Repaired: repaired})
}

// driveProblem records a problem repaired on a drive.
func (f *fsck) driveProblem(kind, what string, fix func()) {
	if f.repair {
		f.later = append(f.later, fix)
	}
	f.rep.Problems = append(f.rep.Problems, FsckProblem{Kind: kind, What: what, Repaired: f.repair})
}

func (f *fsck) load(txn kv.Reader) error {
	err := scan(txn, []byte{kInode}, false, func(k, v []byte) error {
		if len(k) != 9 {
			return nil
		}
		ino := Ino(binary.BigEndian.Uint64(k[1:]))
		n, err := decodeInode(ino, v)
		f.inodes[ino] = &fsckInode{Inode: n, bad: err != nil}
		f.rep.Inodes++
		return nil
	})
	if err != nil {
		return err
	}
	if v, ok, err := get(txn, inodeCountKey); err != nil {
		return err
	} else if ok && len(v) == 8 {
		f.count = binary.BigEndian.Uint64(v)
	}
	err = scan(txn, []byte{kPending}, true, func(k, _ []byte) error {
		key := slices.Clone(k)
		if num, id, ok := parsePendingKey(k); ok && f.m.driveByNum(num) == nil {
			f.problem(ProblemStaleDelete, fmt.Sprintf("chunk %s on drive number %d", id.Short(), num), func(txn kv.Txn) error { return del(txn, key) })
		}
		return nil
	})
	if err != nil {
		return err
	}
	err = scan(txn, []byte{kOrphan}, true, func(k, _ []byte) error {
		if len(k) == 9 {
			f.orphans[Ino(binary.BigEndian.Uint64(k[1:]))] = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	err = scan(txn, []byte{kDentry}, false, func(k, v []byte) error {
		f.rep.Entries++
		key := slices.Clone(k)
		parent, name := Ino(binary.BigEndian.Uint64(k[1:9])), string(k[9:])
		e, err := decodeDentry(v)
		if err != nil {
			f.problem(ProblemBadRecord, fmt.Sprintf("entry %q in directory %d", name, parent), func(txn kv.Txn) error { return del(txn, key) })
			return nil
		}
		f.checkEntry(key, parent, name, e)
		return nil
	})
	if err != nil {
		return err
	}
	err = scan(txn, []byte{kChunk}, false, func(k, v []byte) error {
		var id nodes.ChunkID
		copy(id[:], k[1:])
		rec, err := decodeChunkRecord(v)
		f.chunks[id] = &fsckChunk{rec: rec, bad: err != nil}
		f.rep.Chunks++
		return nil
	})
	if err != nil {
		return err
	}
	err = scan(txn, []byte{kHolding}, true, func(k, _ []byte) error {
		var id nodes.ChunkID
		if len(k) != 5+len(id) {
			return nil
		}
		num := binary.BigEndian.Uint32(k[1:5])
		copy(id[:], k[5:])
		if f.holding[num] == nil {
			f.holding[num] = map[nodes.ChunkID]bool{}
		}
		f.holding[num][id] = true
		return nil
	})
	if err != nil {
		return err
	}
	bad := func(k []byte, ino Ino, idx int64) {
		key := slices.Clone(k)
		f.problem(ProblemBadRecord, fmt.Sprintf("chunk %d of inode %d", idx, ino), func(txn kv.Txn) error { return del(txn, key) })
	}
	return scanSlots(txn, bad, func(ino Ino, idx int64, ls layers) error {
		key := fileChunkKey(ino, idx)
		n := f.inodes[ino]
		if n == nil || n.bad || !n.IsRegular() || idx*int64(f.m.cfg.ChunkSize) >= n.Size {
			f.problem(ProblemStraySlot, fmt.Sprintf("chunk %d of inode %d", idx, ino), func(txn kv.Txn) error { return del(txn, key) })
			return nil
		}
		if past := int64(ls.length()) - (n.Size - idx*int64(f.m.cfg.ChunkSize)); past > 0 {
			// Growing the file would show them: cut the slot at the end.
			f.driveProblem(ProblemPastEnd, fmt.Sprintf("%s: chunk %d holds %d bytes past the end", f.path(ino), idx, past), func() {
				if err := f.m.truncate(context.Background(), ino, n.Size); err != nil {
					f.m.log.Warn("fsck: cut a chunk at the end of a file", "ino", ino, "err", err)
				}
			})
		}
		n.stored += ls.storedBytes()
		for _, ref := range ls.refs() {
			c := f.chunks[ref.ID]
			if c == nil || c.bad {
				// No fix: the data is gone; reads of this chunk fail.
				f.problem(ProblemLostChunk, fmt.Sprintf("%s: chunk %d (%s) has no record", f.path(ino), idx, ref.ID.Short()), nil)
				continue
			}
			c.slots++
			if c.user == "" {
				c.user = fmt.Sprintf("%s chunk %d", f.path(ino), idx)
			}
		}
		return nil
	})
}

// checkEntry checks one name against the inodes loaded so far (all of
// them: inodes are scanned first).
func (f *fsck) checkEntry(key []byte, parent Ino, name string, e dentry) {
	dir, n := f.inodes[parent], f.inodes[e.Ino]
	if dir == nil || dir.bad || !dir.IsDir() || n == nil || n.bad {
		f.problem(ProblemDanglingEntry, fmt.Sprintf("%q in directory %d names inode %d", name, parent, e.Ino), func(txn kv.Txn) error { return del(txn, key) })
		return
	}
	if typ := n.Mode & syscall.S_IFMT; e.Type != typ {
		f.problem(ProblemEntryType, fmt.Sprintf("%q in directory %d", name, parent), func(txn kv.Txn) error {
			return set(txn, key, dentry{Ino: e.Ino, Type: typ}.encode())
		})
	}
	n.names = append(n.names, dentryAt{parent, name})
	if n.IsDir() {
		dir.subdirs++
	}
}

// path renders a name of ino for reports.
func (f *fsck) path(ino Ino) string {
	var parts []string
	for i := 0; i < 256 && ino != RootIno; i++ {
		n := f.inodes[ino]
		if n == nil || len(n.names) == 0 {
			return fmt.Sprintf("inode %d", ino)
		}
		parts = append(parts, n.names[0].name)
		ino = n.names[0].parent
	}
	slices.Reverse(parts)
	return "/" + strings.Join(parts, "/")
}

func (f *fsck) checkNames() {
	inos := make([]Ino, 0, len(f.inodes))
	for ino := range f.inodes {
		inos = append(inos, ino)
	}
	slices.Sort(inos)
	var lost []Ino
	for _, ino := range inos {
		n := f.inodes[ino]
		switch {
		case n.bad:
			f.problem(ProblemBadRecord, fmt.Sprintf("inode %d", ino), func(txn kv.Txn) error {
				if err := del(txn, inoKey(kInode, ino)); err != nil {
					return err
				}
				return addCount(txn, inodeCountKey, -1)
			})
		case ino == RootIno:
		case len(n.names) == 0 && !f.orphans[ino]: // orphans: unlinked while open, freed at open
			lost = append(lost, ino)
		case n.IsDir():
			f.checkDirNames(n)
		}
	}
	// Link counts once every directory has one name.
	for _, ino := range inos {
		n := f.inodes[ino]
		if n.bad || (ino != RootIno && len(n.names) == 0) {
			continue
		}
		want := uint32(len(n.names))
		if n.IsDir() {
			want = 2 + n.subdirs
		}
		if n.Nlink != want {
			f.problem(ProblemNlink, fmt.Sprintf("%s: %d, counted %d", f.path(ino), n.Nlink, want), setNlink(ino, want))
		}
	}
	if len(lost) > 0 {
		f.relink(lost)
	}
	for _, ino := range inos {
		n := f.inodes[ino]
		if !n.bad && n.IsRegular() && n.Stored >= 0 && n.Stored != n.stored {
			f.problem(ProblemStoredBytes, fmt.Sprintf("%s: %d, counted %d", f.path(ino), n.Stored, n.stored),
				editInode(ino, func(i *Inode) { i.Stored = n.stored }))
		}
	}
	if want := uint64(len(f.inodes)); f.count != want {
		// Counted again when repairing: earlier repairs may add
		// lost+found.
		f.problem(ProblemInodeCount, fmt.Sprintf("%d, counted %d", f.count, want), recountInodes)
	}
}

// checkDirNames keeps one name of a directory, preferring the one in its
// recorded parent, and makes its parent that name's directory.
func (f *fsck) checkDirNames(n *fsckInode) {
	ino := n.Ino
	keep := n.names[0]
	for _, at := range n.names {
		if at.parent == n.Parent {
			keep = at
		}
	}
	for _, at := range n.names {
		if at != keep {
			f.problem(ProblemDirNames, fmt.Sprintf("%s: extra name %q in directory %d", f.path(ino), at.name, at.parent),
				func(txn kv.Txn) error { return del(txn, dentryKey(at.parent, at.name)) })
			f.inodes[at.parent].subdirs--
		}
	}
	n.names = []dentryAt{keep}
	if n.Parent != keep.parent {
		f.problem(ProblemDirNames, fmt.Sprintf("%s: parent %d, named in %d", f.path(ino), n.Parent, keep.parent),
			editInode(ino, func(i *Inode) { i.Parent = keep.parent }))
	}
}

// relink gives lost inodes names in /lost+found, creating it if needed.
func (f *fsck) relink(lost []Ino) {
	for _, ino := range lost {
		n := f.inodes[ino]
		name := fmt.Sprintf("#%d", ino)
		f.problem(ProblemLostInode, fmt.Sprintf("inode %d (%s, %d bytes) has no name; /%s/%s", ino, typeName(n.Mode), n.Size, LostFound, name),
			func(txn kv.Txn) error {
				dir, err := lostFound(txn)
				if err != nil {
					return err
				}
				i, err := getInode(txn, ino)
				if err != nil {
					return err
				}
				i.Nlink = 1
				if i.IsDir() {
					i.Nlink = 2 + n.subdirs
					i.Parent = dir
					if err := adjustNlink(txn, dir, 1); err != nil {
						return err
					}
				}
				if err := putInode(txn, &i); err != nil {
					return err
				}
				return set(txn, dentryKey(dir, name), dentry{Ino: ino, Type: i.Mode & syscall.S_IFMT}.encode())
			})
	}
}

// lostFound returns /lost+found, creating it.
func lostFound(txn kv.Txn) (Ino, error) {
	if e, ok, err := getDentry(txn, RootIno, LostFound); err != nil || ok {
		if err == nil && e.Type != syscall.S_IFDIR {
			err = fmt.Errorf("/%s is not a directory; rename it and run fsck --repair again: %w", LostFound, ErrNotDir)
		}
		return e.Ino, err
	}
	n, err := newIno(txn)
	if err != nil {
		return 0, err
	}
	t := now()
	dir := Inode{Ino: Ino(n), Mode: syscall.S_IFDIR | 0o700, Nlink: 2, Parent: RootIno, Atime: t, Mtime: t, Ctime: t, Btime: t}
	if err := putInode(txn, &dir); err != nil {
		return 0, err
	}
	if err := adjustNlink(txn, RootIno, 1); err != nil {
		return 0, err
	}
	return dir.Ino, set(txn, dentryKey(RootIno, LostFound), dentry{Ino: dir.Ino, Type: syscall.S_IFDIR}.encode())
}

func typeName(mode uint32) string {
	switch mode & syscall.S_IFMT {
	case syscall.S_IFDIR:
		return "directory"
	case syscall.S_IFLNK:
		return "symlink"
	case syscall.S_IFREG:
		return "file"
	}
	return "special file"
}

func editInode(ino Ino, edit func(*Inode)) func(txn kv.Txn) error {
	return func(txn kv.Txn) error {
		i, err := getInode(txn, ino)
		if err != nil {
			return err
		}
		edit(&i)
		return putInode(txn, &i)
	}
}

func setNlink(ino Ino, n uint32) func(txn kv.Txn) error {
	return editInode(ino, func(i *Inode) { i.Nlink = n })
}

// checkChunks checks reference counts, holders and the reverse index.
func (f *fsck) checkChunks() {
	for id, c := range f.chunks {
		if c.bad {
			f.problem(ProblemBadRecord, "chunk "+id.Short(), func(txn kv.Txn) error { return del(txn, chunkKey(kChunk, id)) })
			continue
		}
		if c.rec.Refs != c.slots {
			f.problem(ProblemRefcount, fmt.Sprintf("chunk %s: %d, counted %d", id.Short(), c.rec.Refs, c.slots),
				editChunk(id, func(r *chunkRecord, txn kv.Txn) error {
					r.Refs = c.slots
					if r.Refs == 0 {
						return set(txn, chunkKey(kZero, id), nil)
					}
					return nil
				}))
		}
		for _, num := range c.rec.Holders {
			if f.m.driveByNum(num) == nil {
				f.problem(ProblemUnknownDrive, fmt.Sprintf("chunk %s names drive #%d", id.Short(), num), dropHolder(id, num))
				continue
			}
			if !f.holding[num][id] {
				f.problem(ProblemHoldingIndex, fmt.Sprintf("chunk %s on drive #%d is not indexed", id.Short(), num),
					func(txn kv.Txn) error { return set(txn, holdingKey(num, id), nil) })
			}
		}
	}
	for num, ids := range f.holding {
		for id := range ids {
			if c := f.chunks[id]; c == nil || !c.rec.holds(num) {
				f.problem(ProblemHoldingIndex, fmt.Sprintf("drive #%d indexed for chunk %s it does not hold", num, id.Short()),
					func(txn kv.Txn) error { return del(txn, holdingKey(num, id)) })
			}
		}
	}
}

func editChunk(id nodes.ChunkID, edit func(*chunkRecord, kv.Txn) error) func(txn kv.Txn) error {
	return func(txn kv.Txn) error {
		r, ok, err := getChunkRecord(txn, id)
		if err != nil || !ok {
			return err
		}
		if err := edit(&r, txn); err != nil {
			return err
		}
		return set(txn, chunkKey(kChunk, id), r.encode())
	}
}

func dropHolder(id nodes.ChunkID, num uint32) func(txn kv.Txn) error {
	return editChunk(id, func(r *chunkRecord, txn kv.Txn) error {
		return r.editHolders(txn, id, nil, []uint32{num})
	})
}

// checkDrives compares each readable drive's contents with the records:
// copies the records name must be there, copies they do not name are
// orphans. Chunks left with no copy on any drive are lost.
func (f *fsck) checkDrives(ctx context.Context, progress ProgressFunc) error {
	drives := f.m.driveList()
	p := Progress{Op: "fsck", Total: int64(len(drives)), Unit: UnitDrives}
	progress.report(p)
	present := map[nodes.ChunkID]int{} // copies found, or assumed on unreadable drives
	checked := map[uint32]bool{}
	for _, d := range drives {
		if err := ctx.Err(); err != nil {
			return err
		}
		s := d.usable()
		if s == nil {
			continue
		}
		has := map[nodes.ChunkID]bool{}
		if err := s.Iterate(func(id nodes.ChunkID, _ int64) error { has[id] = true; return nil }); err != nil {
			f.m.driveFailed(d, err)
			continue
		}
		checked[d.num] = true
		f.rep.Copies += len(has)
		for id := range has {
			if c := f.chunks[id]; c == nil || c.bad || !c.rec.holds(d.num) {
				// deleteOrphan checks again, under the chunk's lock, that no
				// record names the copy.
				f.driveProblem(ProblemOrphanCopy, fmt.Sprintf("chunk %s on %s", id.Short(), d.record().Name), func() { f.m.deleteOrphan(d, s, id) })
			}
		}
		for id, c := range f.chunks {
			if !c.rec.holds(d.num) {
				continue
			}
			if has[id] {
				present[id]++
				continue
			}
			f.problem(ProblemMissingCopy, fmt.Sprintf("chunk %s on %s", id.Short(), d.record().Name), dropHolder(id, d.num))
		}
		p.Done++
		progress.report(p)
	}
	for id, c := range f.chunks {
		if c.bad {
			continue
		}
		for _, num := range c.rec.Holders {
			if !checked[num] && f.m.driveByNum(num) != nil {
				present[id]++ // on a drive that is offline now: not known lost
			}
		}
		switch {
		case present[id] == 0 && c.slots > 0:
			f.problem(ProblemLostChunk, fmt.Sprintf("%s (%s, %d references) has no copy left", c.user, id.Short(), c.slots), nil)
		case present[id] < int(max(c.rec.Want, 1)) && c.slots > 0:
			f.rep.UnderReplicated++
		}
	}
	return nil
}
