package cluster

import (
	"slices"
	"sync"

	"github.com/dhdfs/dhdfs/cluster/kv"
	"github.com/dhdfs/dhdfs/nodes"
)

// chunkRecordOf reads the record of id.
func (m *Manager) chunkRecordOf(id nodes.ChunkID) (chunkRecord, bool, error) {
	var rec chunkRecord
	var ok bool
	err := m.meta.view(func(txn kv.Reader) error {
		var err error
		rec, ok, err = getChunkRecord(txn, id)
		return err
	})
	return rec, ok, err
}

// setHolders adds and removes holders of id in one transaction, keeping
// the per-drive index in step. want, if non-zero, replaces the record's.
// Each removed holder that is still a drive of the pool gets a pending
// delete in the same transaction, so its copy is deleted even if the drive
// is away now (finishDelete does it, or the caller's own delete and a later
// pass, which finds it gone). The caller holds id's stripe lock.
func (m *Manager) setHolders(id nodes.ChunkID, add, remove []uint32, want uint8) error {
	return m.meta.update(func(txn kv.Txn) error {
		rec, ok, err := getChunkRecord(txn, id)
		if err != nil || !ok {
			return err
		}
		for _, num := range remove {
			if rec.holds(num) && m.driveByNum(num) != nil {
				if err := queueDelete(txn, num, id); err != nil {
					return err
				}
			}
		}
		if err := rec.editHolders(txn, id, add, remove); err != nil {
			return err
		}
		if want > 0 {
			rec.Want = want
		}
		return set(txn, chunkKey(kChunk, id), rec.encode())
	})
}

// editHolders removes and adds holders of chunk id, keeping the per-drive
// index in step inside txn. The caller writes the record.
func (c *chunkRecord) editHolders(txn kv.Txn, id nodes.ChunkID, add, remove []uint32) error {
	for _, num := range remove {
		if i := slices.Index(c.Holders, num); i >= 0 {
			c.Holders = slices.Delete(c.Holders, i, i+1)
			if err := del(txn, holdingKey(num, id)); err != nil {
				return err
			}
		}
	}
	for _, num := range add {
		if !c.holds(num) {
			c.Holders = append(c.Holders, num)
			if err := set(txn, holdingKey(num, id), nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// copyTo writes data (verified content of id) to the drives in targets, in
// parallel, syncs them, and returns those that hold it now. The caller
// holds id's stripe lock. A target whose Put or Sync failed may hold a
// copy all the same; unless a record names it as holder (a copy being
// rewritten in place), finishDelete deletes it once the drive is usable.
func (m *Manager) copyTo(id nodes.ChunkID, data []byte, targets []*drive) []uint32 {
	var mu sync.Mutex
	var ok, failed []uint32
	defer func() { m.queueDeletes(id, failed) }()
	var wg sync.WaitGroup
	for _, d := range targets {
		s := d.usable()
		if s == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.Put(id, data)
			if err == nil {
				err = s.Sync()
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				m.driveFailed(d, err)
				failed = append(failed, d.num)
				return
			}
			ok = append(ok, d.num)
		}()
	}
	wg.Wait()
	return ok
}

// holdingsOf lists the chunks the pool has placed on drive num.
func (m *Manager) holdingsOf(num uint32) ([]nodes.ChunkID, error) {
	var ids []nodes.ChunkID
	prefix := holdingPrefix(num)
	err := m.meta.view(func(txn kv.Reader) error {
		return scan(txn, prefix, true, func(k, _ []byte) error {
			var id nodes.ChunkID
			if len(k) == len(prefix)+len(id) {
				copy(id[:], k[len(prefix):])
				ids = append(ids, id)
			}
			return nil
		})
	})
	return ids, err
}

// reportBad records that drive num returned a missing or corrupt copy of
// id, for the healer to rewrite.
func (m *Manager) reportBad(id nodes.ChunkID, num uint32) {
	m.badMu.Lock()
	if m.bad[id] == nil {
		m.bad[id] = map[uint32]bool{}
	}
	m.bad[id][num] = true
	m.badMu.Unlock()
	m.kickHealer()
}

func (m *Manager) isBad(id nodes.ChunkID, num uint32) bool {
	m.badMu.Lock()
	defer m.badMu.Unlock()
	return m.bad[id][num]
}

func (m *Manager) clearBad(id nodes.ChunkID, num uint32) {
	m.badMu.Lock()
	defer m.badMu.Unlock()
	delete(m.bad[id], num)
	if len(m.bad[id]) == 0 {
		delete(m.bad, id)
	}
}

// kickHealer wakes the background healer, if one runs.
func (m *Manager) kickHealer() {
	select {
	case m.healKick <- struct{}{}:
	default:
	}
}
