package dirdrive

import (
	"encoding/binary"
	"errors"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dhdfs/dhdfs/nodes"
)

// stateKey holds the packs' storeState in Badger, outside the chunk keys.
var stateKey = []byte("~packs")

// storeState is what a store records of its packs at each Sync and at
// Close.
//
// Put writes a chunk's bytes to a pack and then its location to Badger;
// neither is synced. After a power cut Badger may come back with a
// location whose bytes never reached the disk (the kernel writes pages
// back in no particular order). Sync therefore syncs the packs before
// Badger and records the sync point: every entry that starts below it is
// durable. An open that does not find the clean flag Close sets checks
// every location at or past the sync point against the entry there
// (repair), and drops those that point at nothing valid, so that the
// chunk is missing rather than wrong: the pool's crash recovery undoes
// or repeats writes it finds missing, but would read wrong bytes back.
type storeState struct {
	// clean says that Close synced everything and no write followed.
	clean bool
	// synced is the sync point of the last Sync.
	synced packPos
}

const stateFormat = 1

func (st storeState) encode() []byte {
	b := make([]byte, 14)
	b[0] = stateFormat
	if st.clean {
		b[1] = 1
	}
	binary.LittleEndian.PutUint32(b[2:], st.synced.pack)
	binary.LittleEndian.PutUint64(b[6:], uint64(st.synced.off))
	return b
}

func decodeState(b []byte) (storeState, error) {
	if len(b) != 14 || b[0] != stateFormat {
		return storeState{}, fmt.Errorf("pack state: unknown format (%d bytes)", len(b))
	}
	return storeState{clean: b[1] == 1, synced: packPos{
		pack: binary.LittleEndian.Uint32(b[2:]),
		off:  int64(binary.LittleEndian.Uint64(b[6:])),
	}}, nil
}

// record writes st, unless it is the state last written. The caller
// holds stateMu.
func (s *BadgerStore) record(st storeState) error {
	if st == s.recorded {
		return nil
	}
	if err := s.update(func(txn *badger.Txn) error { return txn.Set(stateKey, st.encode()) }); err != nil {
		return err
	}
	s.recorded = st
	return nil
}

// markDirty clears the clean flag, durably, before the first change after
// a clean open, so that a crash from then on is noticed.
func (s *BadgerStore) markDirty() error {
	if s.dirty.Load() {
		return nil
	}
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	if s.dirty.Load() {
		return nil
	}
	if err := s.record(storeState{synced: s.recorded.synced}); err != nil {
		return err
	}
	if err := s.db.Sync(); err != nil {
		return err
	}
	if err := upgradeIdentity(s.dir); err != nil {
		return err
	}
	s.dirty.Store(true)
	return nil
}

// upgradeIdentity marks the drive in dir as holding packs before it first
// may (identity format 2), so that a dhdfs from before packs refuses it
// with "unsupported format" instead of reading locations as chunk bytes.
func upgradeIdentity(dir string) error {
	id, err := nodes.ReadIdentity(dir)
	if errors.Is(err, nodes.ErrNotDrive) || err == nil && id.Format >= nodes.IdentityFormat {
		return nil // a bare store (tests), or marked already
	}
	if err != nil {
		return err
	}
	return nodes.WriteIdentity(dir, id)
}

// readState returns the recorded state, and whether there was one.
func (s *BadgerStore) readState() (storeState, bool, error) {
	var st storeState
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(stateKey)
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			st, err = decodeState(v)
			return err
		})
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return st, false, nil
	}
	return st, err == nil, err
}

// recover runs at open: after a clean close the newest pack takes writes
// again; otherwise the locations written since the last Sync are checked
// (repair) and the result synced.
func (s *BadgerStore) recover() error {
	st, found, err := s.readState()
	if err != nil {
		return err
	}
	s.recorded = st
	if !found {
		s.recorded.clean = true // as good as: nothing to check, and markDirty writes
	}
	// Pack numbers are never reused, even of packs Reclaim deleted: an
	// entry in a reused pack below the sync point would pass as durable.
	s.packs.mu.Lock()
	if st.synced.off > 0 {
		s.packs.last = max(s.packs.last, st.synced.pack)
	} else if st.synced.pack > 0 {
		s.packs.last = max(s.packs.last, st.synced.pack-1)
	}
	s.packs.mu.Unlock()
	switch {
	case found && st.clean:
		s.packs.resume()
		return nil
	case !found && len(s.packs.list()) == 0:
		// A new store, or one written before packs: nothing to check.
		return nil
	}
	// No state but packs: a crash before the first Sync. The sync point
	// is then the start of the first pack.
	if err := s.repair(st.synced); err != nil {
		return err
	}
	s.dirty.Store(true)
	return s.sync(false)
}

// repair checks, after a crash, every chunk whose location is at or past
// the sync point (or past the end of its pack, or in a missing pack)
// against the entry there, header and data CRC, and drops the index
// entries that do not match, so that those chunks read as missing. It
// counts the live bytes on the way, and syncs the packs the surviving
// locations point into (a crash of the process leaves their bytes in the
// page cache only). New writes go to a new pack: the old ones may end in
// torn entries.
func (s *BadgerStore) repair(synced packPos) error {
	type suspect struct {
		id nodes.ChunkID
		st stored
	}
	var suspects []suspect
	var live int64
	perPack := map[uint32]int64{}
	packs := map[uint32]*pack{}
	for _, p := range s.packs.list() {
		packs[p.num] = p
	}
	err := s.db.View(func(txn *badger.Txn) error {
		return iterateIndex(txn, func(id nodes.ChunkID, st stored) error {
			if st.packed {
				p := packs[st.loc.pack]
				if p == nil || !st.loc.pos().less(synced) || st.loc.off+st.loc.entrySize() > p.size {
					suspects = append(suspects, suspect{id, st})
					return nil
				}
				perPack[st.loc.pack] += st.loc.entrySize()
			}
			live += st.size
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("check chunks after a crash: %w", err)
	}
	var buf []byte
	dropped := 0
	for _, c := range suspects {
		p := packs[c.st.loc.pack]
		ok := false
		if p != nil {
			h, data, err := p.readEntry(c.st.loc.off, buf)
			if err != nil && !errors.Is(err, errBadEntry) {
				return fmt.Errorf("check chunks after a crash: %w", err)
			}
			buf = data
			ok = err == nil && h.id == c.id && int64(h.size) == c.st.loc.size
		}
		if ok {
			perPack[c.st.loc.pack] += c.st.loc.entrySize()
			live += c.st.size
			continue
		}
		err := s.update(func(txn *badger.Txn) error { return txn.Delete(chunkKey(c.id)) })
		if err != nil {
			return fmt.Errorf("check chunks after a crash: drop chunk %s: %w", c.id.Short(), err)
		}
		dropped++
	}
	for _, p := range packs {
		if p.num >= synced.pack {
			if err := p.datasync(); err != nil {
				return fmt.Errorf("check chunks after a crash: sync pack %d: %w", p.num, err)
			}
		}
		p.live.Store(perPack[p.num])
	}
	s.live.Store(live)
	s.liveKnown.Store(true)
	if len(suspects) > 0 {
		s.log.Warn("chunk store was not closed cleanly: checked the chunks written since its last sync",
			"dir", s.dir, "checked", len(suspects), "dropped", dropped)
	}
	return nil
}
