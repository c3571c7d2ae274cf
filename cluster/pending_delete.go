package cluster

import (
	"context"
	"fmt"
	"slices"

	"github.com/dhdfs/dhdfs/cluster/kv"
	"github.com/dhdfs/dhdfs/nodes"
)

// Pending deletes.
//
// A copy on a drive that no chunk record names is an orphan: it holds
// space nothing frees, and fsck reports it. A copy stops being named when
// its chunk is collected (the last reference went), when healing,
// draining or rebalancing drops a holder, and a copy may exist unnamed
// when a Put failed but may have landed (it timed out, or the drive went
// offline under it). If the drive cannot delete such a copy at once
// (offline, failed, busy), it must not be forgotten: the change that stops
// naming the copy records "p drive chunk" in the same transaction, and the
// copy and its key are deleted once the drive is usable: when it comes
// back (node online, the prober, opening the pool), at every heal pass,
// gc and scrub, and at Close, before the pool is marked clean.
//
// Every write of a pending key, every delete it leads to, and every change
// of a record's holders hold the chunk's stripe lock. A pending delete
// re-reads the record under that lock and, if the chunk was meanwhile
// written to that drive and recorded again (content addressing brings the
// same chunk back), drops the key and keeps the copy.

// queueDelete records inside txn that drive num's copy of id, if any, is
// to be deleted.
func queueDelete(txn kv.Txn, num uint32, id nodes.ChunkID) error {
	return set(txn, pendingKey(num, id), nil)
}

// queueDeletes records, in a transaction of its own, that drives nums may
// hold copies of id that no record names: Puts that failed but may have
// landed. The caller holds id's stripe lock. A failure is logged: the copy
// is then an orphan for gc or scrub to find.
func (m *Manager) queueDeletes(id nodes.ChunkID, nums []uint32) {
	if len(nums) == 0 {
		return
	}
	err := m.meta.update(func(txn kv.Txn) error {
		for _, num := range nums {
			if err := queueDelete(txn, num, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		m.log.Warn("queue delete of unrecorded copies", "chunk", id.Short(), "err", err)
	}
}

// finishDelete carries out a pending delete of drive d's copy of id: the
// copy goes unless a record names d as its holder again, then the key
// goes. The caller holds id's stripe lock. It reports whether a copy was
// deleted. A drive that is not usable keeps its key, as does one whose
// delete fails (it is marked failed and the error returned).
func (m *Manager) finishDelete(d *drive, id nodes.ChunkID) (bool, error) {
	var pending, held bool
	err := m.meta.view(func(txn kv.Reader) error {
		_, ok, err := get(txn, pendingKey(d.num, id))
		if err != nil || !ok {
			return err
		}
		pending = true
		rec, ok, err := getChunkRecord(txn, id)
		held = ok && rec.holds(d.num)
		return err
	})
	if err != nil || !pending {
		return false, err
	}
	deleted := false
	if !held {
		s := d.usable()
		if s == nil {
			return false, nil
		}
		// Has first: most queued copies of failed Puts never landed, and
		// deleting an absent chunk still writes a tombstone.
		there, err := s.Has(id)
		if err == nil && there {
			err = s.Delete(id)
			deleted = err == nil
		}
		if err != nil {
			m.driveFailed(d, err)
			return false, fmt.Errorf("delete chunk %s from %s: %w", id.Short(), d.record().Name, err)
		}
	}
	if err := m.meta.update(func(txn kv.Txn) error { return del(txn, pendingKey(d.num, id)) }); err != nil {
		return deleted, fmt.Errorf("drop pending delete of chunk %s: %w", id.Short(), err)
	}
	return deleted, nil
}

// finishDeletes carries out every pending delete of drive d while it is
// usable, and returns how many copies it deleted.
func (m *Manager) finishDeletes(ctx context.Context, d *drive) (int, error) {
	var ids []nodes.ChunkID
	err := m.meta.view(func(txn kv.Reader) error {
		return scan(txn, pendingPrefix(d.num), true, func(k, _ []byte) error {
			if _, id, ok := parsePendingKey(k); ok {
				ids = append(ids, id)
			}
			return nil
		})
	})
	if err != nil {
		return 0, fmt.Errorf("list pending deletes of %s: %w", d.record().Name, err)
	}
	n := 0
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		if d.usable() == nil {
			break // the rest waits for the drive to return
		}
		mu := &m.stripes[id[0]]
		mu.Lock()
		deleted, err := m.finishDelete(d, id)
		mu.Unlock()
		if err != nil {
			m.log.Warn("pending delete", "drive", d.record().Name, "chunk", id.Short(), "err", err)
			continue
		}
		if deleted {
			n++
		}
	}
	if n > 0 {
		m.log.Info("deleted copies left behind while the drive was away", "drive", d.record().Name, "copies", n)
	}
	return n, nil
}

// finishAllDeletes carries out the pending deletes of every usable drive,
// drops those of drives no longer in the pool (their directory is no
// drive any more), and returns how many copies it deleted.
func (m *Manager) finishAllDeletes(ctx context.Context) (int, error) {
	counts, err := m.pendingDeletes()
	if err != nil {
		return 0, err
	}
	var stale []uint32
	for num := range counts {
		if m.driveByNum(num) == nil {
			stale = append(stale, num)
		}
	}
	slices.Sort(stale)
	for _, num := range stale {
		if err := m.dropPendingOf(num); err != nil {
			return 0, err
		}
	}
	total := 0
	for _, d := range m.driveList() {
		if counts[d.num] == 0 || d.usable() == nil {
			continue
		}
		n, err := m.finishDeletes(ctx, d)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// dropPendingOf forgets the pending deletes of drive num, which left the
// pool.
func (m *Manager) dropPendingOf(num uint32) error {
	prefix := pendingPrefix(num)
	for {
		var keys [][]byte
		err := m.meta.view(func(txn kv.Reader) error {
			return scan(txn, prefix, true, func(k, _ []byte) error {
				keys = append(keys, slices.Clone(k))
				if len(keys) == m.meta.batch {
					return errStop
				}
				return nil
			})
		})
		if err == nil && len(keys) > 0 {
			err = m.meta.update(func(txn kv.Txn) error {
				for _, k := range keys {
					if err := del(txn, k); err != nil {
						return err
					}
				}
				return nil
			})
		}
		if err != nil {
			return fmt.Errorf("drop pending deletes of drive #%d: %w", num, err)
		}
		if len(keys) < m.meta.batch {
			return nil
		}
	}
}

// pendingDeletes counts the pending deletes by drive number.
func (m *Manager) pendingDeletes() (map[uint32]int64, error) {
	counts := map[uint32]int64{}
	err := m.meta.view(func(txn kv.Reader) error {
		return scan(txn, []byte{kPending}, true, func(k, _ []byte) error {
			if num, _, ok := parsePendingKey(k); ok {
				counts[num]++
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("count pending deletes: %w", err)
	}
	return counts, nil
}

// PendingDeletes returns how many copies wait, on drives that are away,
// to be deleted when they return.
func (m *Manager) PendingDeletes() (int64, error) {
	counts, err := m.pendingDeletes()
	var n int64
	for _, c := range counts {
		n += c
	}
	return n, err
}
