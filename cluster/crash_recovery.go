package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/dhdfs/dhdfs/cluster/kv"
	"github.com/dhdfs/dhdfs/nodes"
)

// recover finishes work a crash interrupted: it frees orphaned inodes,
// collects chunks whose last reference was dropped and, after a crash,
// recounts references. It runs at open, before any handle exists.
func (m *Manager) recover() error {
	var orphans, truncating []Ino
	var crashed bool
	err := m.meta.paged(func(txn kv.Reader) error {
		_, clean, err := get(txn, cleanKey)
		crashed = !clean
		if err != nil {
			return err
		}
		inos := func(kind byte, out *[]Ino) error {
			return scan(txn, []byte{kind}, true, func(k, _ []byte) error {
				if len(k) == 9 {
					*out = append(*out, Ino(binary.BigEndian.Uint64(k[1:])))
				}
				return nil
			})
		}
		if err := inos(kOrphan, &orphans); err != nil {
			return err
		}
		return inos(kTruncate, &truncating)
	})
	if err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	// Counted first: freeing orphans below must find the count there.
	if err := m.ensureInodeCount(); err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	// Before anything counts references: this drops some.
	reverted, err := m.revertUnsettled()
	if err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	for _, ino := range truncating {
		if err := m.finishTruncate(ino); err != nil {
			return fmt.Errorf("recover: finish truncating inode %d: %w", ino, err)
		}
	}
	for _, ino := range orphans {
		if err := m.freeOrphan(ino); err != nil {
			return fmt.Errorf("recover: free inode %d: %w", ino, err)
		}
	}
	leaked, swept := 0, 0
	if crashed {
		// Writes staged before a crash took references that no file holds,
		// and may have stored copies they never recorded.
		if leaked, err = m.recountRefs(); err != nil {
			return fmt.Errorf("recover: %w", err)
		}
		for _, d := range m.driveList() {
			if s := d.usable(); s != nil {
				n, _ := m.sweepOrphans(d, s)
				swept += n
			}
		}
	}
	zero, err := m.zeroChunks()
	if err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	m.collect(zero)
	if crashed || len(zero) > 0 {
		// Make the repairs durable and delete what they freed.
		if err := m.settleAll(); err != nil {
			return fmt.Errorf("recover: %w", err)
		}
	}
	if len(orphans)+len(zero)+leaked+swept+reverted > 0 {
		m.log.Info("recovered interrupted work", "orphans", len(orphans), "chunks", len(zero), "leaked_refs", leaked,
			"orphan_copies", swept, "lost_unsynced_layers", reverted)
	}
	// Until a clean Close, the pool counts as crashed.
	return m.meta.update(func(txn kv.Txn) error { return del(txn, cleanKey) })
}

// ensureInodeCount counts the inodes into inodeCountKey if the count is
// missing (a pool from before it was kept).
func (m *Manager) ensureInodeCount() error {
	return m.meta.update(func(txn kv.Txn) error {
		if _, ok, err := get(txn, inodeCountKey); err != nil || ok {
			return err
		}
		return recountInodes(txn)
	})
}

// recountInodes sets the inode count to the inodes there are.
func recountInodes(txn kv.Txn) error {
	n := uint64(0)
	err := scan(txn, []byte{kInode}, true, func(_, _ []byte) error {
		n++
		return nil
	})
	if err != nil {
		return err
	}
	return set(txn, inodeCountKey, binary.BigEndian.AppendUint64(nil, n))
}

// InodeCount returns how many inodes exist (files, directories, links and
// other nodes, the root and unlinked files still open included).
func (m *Manager) InodeCount() (uint64, error) {
	var n uint64
	err := m.meta.view(func(txn kv.Reader) error {
		v, ok, err := get(txn, inodeCountKey)
		if ok && len(v) == 8 {
			n = binary.BigEndian.Uint64(v)
		}
		return err
	})
	return n, err
}

// markClean records a clean close.
func (m *Manager) markClean() error {
	if err := m.meta.update(func(txn kv.Txn) error { return set(txn, cleanKey, nil) }); err != nil {
		return err
	}
	return m.meta.sync()
}

// zeroChunks lists chunks whose reference count fell to zero.
func (m *Manager) zeroChunks() ([]nodes.ChunkID, error) {
	var zero []nodes.ChunkID
	err := m.meta.paged(func(txn kv.Reader) error {
		return scan(txn, []byte{kZero}, true, func(k, _ []byte) error {
			var id nodes.ChunkID
			if len(k) == 1+len(id) {
				copy(id[:], k[1:])
				zero = append(zero, id)
			}
			return nil
		})
	})
	return zero, err
}

// recountRefs sets every chunk's reference count to the number of file
// slots pointing at it. Only safe when no write is staged: at open.
func (m *Manager) recountRefs() (int, error) {
	counts := map[nodes.ChunkID]uint64{}
	var fixes []nodes.ChunkID
	err := m.meta.paged(func(txn kv.Reader) error {
		err := scanSlots(txn, nil, func(_ Ino, _ int64, ls layers) error {
			for _, ref := range ls.refs() {
				counts[ref.ID]++
			}
			return nil
		})
		if err != nil {
			return err
		}
		return scan(txn, []byte{kChunk}, false, func(k, v []byte) error {
			rec, err := decodeChunkRecord(v)
			if err != nil {
				return err
			}
			var id nodes.ChunkID
			copy(id[:], k[1:])
			if rec.Refs != counts[id] {
				fixes = append(fixes, id)
			}
			return nil
		})
	})
	if err != nil {
		return 0, err
	}
	for start := 0; start < len(fixes); start += m.meta.batch {
		batch := fixes[start:min(start+m.meta.batch, len(fixes))]
		err := m.meta.update(func(txn kv.Txn) error {
			for _, id := range batch {
				rec, ok, err := getChunkRecord(txn, id)
				if err != nil || !ok {
					return err
				}
				rec.Refs = counts[id]
				if err := set(txn, chunkKey(kChunk, id), rec.encode()); err != nil {
					return err
				}
				if rec.Refs == 0 {
					if err := set(txn, chunkKey(kZero, id), nil); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	return len(fixes), nil
}

// revertUnsettled checks the slots committed in a sync round that may not
// have finished before the pool closed (a crash): an unsynced layer whose
// chunk no drive holds (its Put never reached a disk, though the metadata
// naming it did) is dropped, so the slot reads as it did before that unsynced
// write; then the slot is settled. A chunk whose holders cannot be asked
// now (offline, failed) is kept: healing deals with it. It returns how
// many layers were dropped.
func (m *Manager) revertUnsettled() (int, error) {
	type key struct {
		ino     Ino
		idx     int64
		preSize int64 // the size before the slot's last commit; -1: unknown (older markers)
	}
	var keys []key
	err := m.meta.paged(func(txn kv.Reader) error {
		return scan(txn, []byte{kUnsettled}, false, func(k, v []byte) error {
			if len(k) == 17 {
				pre := int64(-1)
				if len(v) >= 16 {
					pre = int64(binary.BigEndian.Uint64(v[8:16]))
				}
				keys = append(keys, key{Ino(binary.BigEndian.Uint64(k[1:9])), int64(binary.BigEndian.Uint64(k[9:17])), pre})
			}
			return nil
		})
	})
	if err != nil || len(keys) == 0 {
		return 0, err
	}
	lost := map[nodes.ChunkID]bool{}
	// Chunks that reached some of their holders only: a drive holding its
	// most already put its copy into its store while another held its own
	// in memory for the round (held.go).
	type split struct{ have, lack []uint32 }
	partial := map[nodes.ChunkID]split{}
	gone := func(ref ChunkRef) bool {
		if v, ok := lost[ref.ID]; ok {
			return v
		}
		rec, ok, err := m.chunkRecordOf(ref.ID)
		held, unknown := false, false
		var have, lack []uint32
		if err == nil && ok {
			for _, num := range rec.Holders {
				d := m.driveByNum(num)
				if d == nil {
					continue
				}
				s := d.usable()
				if s == nil {
					unknown = true
					continue
				}
				if has, err := s.Has(ref.ID); err != nil {
					unknown = true
				} else if has {
					held = true
					have = append(have, num)
				} else {
					lack = append(lack, num)
				}
			}
		}
		if held && len(lack) > 0 {
			partial[ref.ID] = split{have, lack}
		}
		lost[ref.ID] = err == nil && !held && !unknown
		return lost[ref.ID]
	}
	dropped := 0
	// A dropped commit's growth goes too, back to the size it started
	// from but not below the data left. After a killed process only a
	// file's last commit can have lost its chunks (held ones: an fsync
	// holds the file until its round is done), and every slot it wrote
	// has that commit's marker.
	shrink := map[Ino]int64{}
	for _, k := range keys {
		err := m.editSlot(k.ino, k.idx, func(ls layers) (layers, []piece) {
			var keep layers
			var out []piece
			for _, p := range ls {
				if p.Unsynced && p.stored() && gone(p.Ref) {
					out = append(out, p)
					continue
				}
				keep = append(keep, p)
			}
			dropped += len(out)
			if len(out) > 0 && k.preSize >= 0 {
				if s, ok := shrink[k.ino]; !ok || k.preSize < s {
					shrink[k.ino] = k.preSize
				}
			}
			keep, hidden := keep.settle() // what is left is on disk
			return holeIfEmpty(keep, append(out, hidden...))
		})
		if err != nil && !errors.Is(err, ErrNotFound) {
			return dropped, err
		}
		// Before the marker goes: a crash in between finds it again.
		for id, sp := range partial {
			if err := m.refill(id, sp.have, sp.lack); err != nil {
				return dropped, err
			}
			delete(partial, id)
		}
		if err := m.meta.update(func(txn kv.Txn) error { return del(txn, unsettledKey(k.ino, k.idx)) }); err != nil {
			return dropped, err
		}
	}
	cs := int64(m.cfg.ChunkSize)
	for ino, size := range shrink {
		err := m.meta.update(func(txn kv.Txn) error {
			n, err := getInode(txn, ino)
			if err != nil || n.Size <= size {
				return err
			}
			// After a power cut other commits' chunks may be lost too,
			// and the markers keep only each slot's last: never below
			// the data that is left.
			prefix := inoKey(kFile, ino)
			err = scan(txn, prefix, false, func(k, v []byte) error {
				ls, err := decodeLayers(v)
				for _, p := range ls {
					if p.stored() {
						size = max(size, chunkIndex(k, prefix)*cs+int64(p.end()))
					}
				}
				return err
			})
			if err != nil || n.Size <= size {
				return err
			}
			n.Size = size
			return putInode(txn, &n)
		})
		if err != nil && !errors.Is(err, ErrNotFound) {
			return dropped, err
		}
	}
	return dropped, nil
}

// refill finishes a write a crash cut short: it copies chunk id onto the
// holders its record names that lack it (lack), from one that has it
// (have). A holder it cannot copy onto is struck from the record, which
// then tells the truth: the chunk is under-replicated until healing
// copies it.
func (m *Manager) refill(id nodes.ChunkID, have, lack []uint32) error {
	rec, ok, err := m.chunkRecordOf(id)
	if err != nil || !ok {
		return err
	}
	ref := ChunkRef{ID: id, Size: rec.Size}
	from := rec
	from.Holders = have
	var targets []*drive
	for _, num := range lack {
		if d := m.driveByNum(num); d != nil {
			targets = append(targets, d)
		}
	}
	var done []uint32
	data, err := m.fromHolders(context.Background(), ref, from, func(s nodes.Store) ([]byte, error) { return s.Get(id, nil) },
		func(data []byte) bool { return m.verifyChunk(ref, rec, data) })
	if err == nil {
		done = m.copyTo(id, data, targets)
	} else {
		m.log.Warn("copy a chunk a crash left on some of its drives", "chunk", id.Short(), "err", err)
	}
	var failed []uint32
	for _, num := range lack {
		if !slices.Contains(done, num) {
			failed = append(failed, num)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	if err := m.setHolders(id, nil, failed, 0); err != nil {
		return fmt.Errorf("chunk %s: %w", id.Short(), err)
	}
	return nil
}
