package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dhdfs/dhdfs/cluster/kv"
	"github.com/dhdfs/dhdfs/nodes"
)

// Durability works in sync rounds. File commits put new layers in the
// metadata without waiting for disks and record the drives they wrote; a
// round syncs those drives and the metadata store at the same time, in
// parallel, so an fsync costs one round of durable writes, and fsyncs
// that arrive while a round runs share the next one (group commit).
//
// That the metadata may reach the disk before the chunks it names is safe
// because of how slots change (slots.go): a commit only adds layers on
// top and marks the slot unsettled with the round (epoch) it belongs to;
// until that round is durable nothing below is given up, and after a
// crash the next open drops the top layers whose chunks no drive holds.
// Once a round is durable the slots it covers are settled: layers nothing
// shows any more are dropped. Likewise chunks whose last reference went
// are deleted from the drives only after the round that made the
// metadata change durable, so a crash can never bring back a reference to
// a deleted copy.

// durableClose reports whether closing a file syncs it to disk (no
// background sync configured) rather than only committing it.
func (m *Manager) durableClose() bool { return m.opts.SyncInterval <= 0 }

// syncState is the state of sync rounds, guarded by mu.
type syncState struct {
	mu      sync.Mutex
	cond    *sync.Cond
	next    uint64           // the round that starts next
	done    uint64           // rounds finished: every round below it
	running bool             // a caller is running rounds
	errs    map[uint64]error // recent rounds' errors
}

// committing runs a metadata change that marks slots unsettled, with the
// epoch (the sync round) it belongs to. A round starts only between such
// changes, so every change with an epoch up to the round's is in the
// metadata the round syncs, and so are the drives it wrote (markUnsynced
// under the same lock).
func (m *Manager) committing(fn func(epoch uint64) error) error {
	m.commitMu.RLock()
	defer m.commitMu.RUnlock()
	return fn(m.epoch.Load())
}

// markUnsynced records drives holding chunks that committed metadata names
// but that may not be on disk yet; the next round syncs them. Callers that
// commit layers call it inside committing.
func (m *Manager) markUnsynced(nums []uint32) {
	if len(nums) == 0 {
		return
	}
	m.unsyncedMu.Lock()
	for _, n := range nums {
		m.unsynced[n] = true
	}
	m.unsyncedMu.Unlock()
}

// Sync makes everything committed before it was called durable: the
// drives written and the metadata, in one round. Concurrent calls share
// rounds: a call waits for the first round that starts after it.
func (m *Manager) Sync() error {
	m.syncAt.Store(time.Now().UnixNano())
	g := &m.syncs
	g.mu.Lock()
	defer g.mu.Unlock()
	ticket := g.next // the first round to start after this call
	for g.done <= ticket {
		if g.running {
			g.cond.Wait()
			continue
		}
		// No one runs rounds: this caller does, until its own is done.
		r := g.next
		g.next++
		g.running = true
		g.mu.Unlock()
		err := m.syncRound()
		g.mu.Lock()
		g.running = false
		g.done = r + 1
		g.errs[r] = err
		for old := range g.errs {
			if old+16 < r {
				delete(g.errs, old)
			}
		}
		g.cond.Broadcast()
	}
	return g.errs[ticket]
}

// startRound begins a sync round or checkpoint (roundMu held): between
// commits, it ends the epoch (commits up to here carry it or less) and
// takes what the round must make durable: the drives written since the
// last round, the chunks released since, and the journal work.
func (m *Manager) startRound() (epoch uint64, nums []uint32, zeros []nodes.ChunkID, w journalWork) {
	m.commitMu.Lock()
	defer m.commitMu.Unlock()
	epoch = m.epoch.Add(1) - 1
	m.unsyncedMu.Lock()
	nums = make([]uint32, 0, len(m.unsynced))
	for n := range m.unsynced {
		nums = append(nums, n)
	}
	clear(m.unsynced)
	m.unsyncedMu.Unlock()
	m.zeroMu.Lock()
	zeros = m.zeroQueue
	m.zeroQueue = nil
	m.zeroMu.Unlock()
	return epoch, nums, zeros, m.takeJournalWork()
}

// syncRound makes durable what was committed before it started: the
// drives written since the last round and the metadata, in parallel,
// through the drives' journals where it can (journal.go). Then the
// settler settles the slots and deletes the chunks the round made safe
// to give up.
func (m *Manager) syncRound() error {
	m.roundMu.Lock()
	defer m.roundMu.Unlock()
	epoch, nums, zeros, w := m.startRound()

	if err := m.journalRound(nums, w); err != nil {
		m.markUnsynced(nums)
		m.collect(zeros)
		return err
	}
	m.roundDone(epoch, zeros)
	return nil
}

// roundDone hands what a durable round (of epoch) made safe to the
// settler: the slots to settle and the chunks to delete.
func (m *Manager) roundDone(epoch uint64, zeros []nodes.ChunkID) {
	m.zeroMu.Lock()
	if len(m.zeroReady) == 0 {
		m.zeroSince = time.Now()
	}
	m.zeroReady = append(m.zeroReady, zeros...)
	m.zeroMu.Unlock()
	for {
		to := m.settleTo.Load()
		if to >= epoch+1 || m.settleTo.CompareAndSwap(to, epoch+1) {
			break
		}
	}
	select {
	case m.settleKick <- struct{}{}:
	default:
	}
}

// pendingSync reports whether something committed may not be durable.
func (m *Manager) pendingSync() bool {
	m.unsyncedMu.Lock()
	n := len(m.unsynced)
	m.unsyncedMu.Unlock()
	m.jrn.mu.Lock()
	b := len(m.jrn.batches)
	m.jrn.mu.Unlock()
	return n > 0 || b > 0
}

// pendingWork reports whether a round has anything to do: make changes
// durable, or let released chunks be deleted and slots be settled.
func (m *Manager) pendingWork() bool {
	m.zeroMu.Lock()
	z := len(m.zeroQueue) + len(m.zeroReady)
	m.zeroMu.Unlock()
	return z > 0 || m.pendingSync() || m.settleTo.Load() > m.settled.Load()
}

// collect deletes chunks whose last reference went, once the change that
// dropped it is durable: it queues them for the next sync round.
func (m *Manager) collect(ids []nodes.ChunkID) {
	if len(ids) == 0 {
		return
	}
	m.zeroMu.Lock()
	m.zeroQueue = append(m.zeroQueue, ids...)
	m.zeroMu.Unlock()
}

// settleNow settles every slot whose epoch a finished round covers and
// deletes the chunks that rounds made safe to delete. The settler runs it
// after each round; Close runs it directly.
func (m *Manager) settleNow() { m.settleUpTo(false, false) }

// settleUpTo is settleNow; force also deletes every marker waiting in
// m.markers (see settle). lazy, for the settler, leaves the chunks to
// delete waiting until there are collectBatch of them or the oldest has
// waited collectWait: an appender that fsyncs after every write releases
// one small chunk per fsync, and collecting each alone cost a metadata
// read and a transaction per fsync, beside the fsyncs that follow.
func (m *Manager) settleUpTo(force, lazy bool) {
	// One at a time: a caller that returns from here (gc, Close) has
	// seen every delete a finished round allowed carried out.
	m.settleMu.Lock()
	defer m.settleMu.Unlock()
	upTo := m.settleTo.Load()
	if upTo > m.settled.Load() || len(m.markers.due) > 0 {
		if err := m.settle(upTo-1, force); err != nil {
			m.log.Warn("settle chunk slots", "err", err)
		} else {
			m.settled.Store(max(m.settled.Load(), upTo))
		}
	}
	m.zeroMu.Lock()
	var ready []nodes.ChunkID
	if !lazy || len(m.zeroReady) >= collectBatch || time.Since(m.zeroSince) >= collectWait {
		ready = m.zeroReady
		m.zeroReady = nil
	}
	m.zeroMu.Unlock()
	m.collectNow(ready)
}

// collectWait is how long the settler lets fewer than collectBatch
// released chunks wait for more (it also looks every second).
const collectWait = 100 * time.Millisecond

// startSettler settles slots and deletes chunks after each sync round,
// off the path of the fsync that waited for the round. It does not wait
// for rounds to gather: a slot settled late keeps its hidden layers
// longer, and the next writes then find it fuller and merge it sooner
// (4 KiB random writes, each fsynced, stored 2.8 bytes per byte per copy
// with a 20 ms wait, 1.7 without).
func (m *Manager) startSettler() {
	m.loop(time.Second, m.settleKick, 0, func(context.Context) { m.settleUpTo(false, true) })
}

// settle settles the unsettled slots committed in epochs up to epoch:
// their layers' chunks are durable now, so layers no byte shows any more
// are dropped and their references released. The slots come from the
// in-memory index commits keep (unsettledIndex), not from a scan of the
// markers: a file fsynced thousands of times rewrites one marker as often,
// and Badger's iterators step over every old version still in its
// memtable, which made each scan cost more than the fsync it followed.
//
// A slot with no layer to drop needs only its marker deleted, which is
// bookkeeping (a marker left behind costs the next open a look at the
// slot's top layers): those deletions wait in m.markers, up to
// markerBatch of them or markerWait, and go with the next settle that has
// layers to drop. An appender that fsyncs after every write then costs
// one settling transaction per fold of its pieces, not one per fsync.
// force deletes them now. settleMu is held.
func (m *Manager) settle(epoch uint64, force bool) error {
	due := m.unsettled.take(epoch)
	var work []settleItem
	err := m.meta.view(func(txn kv.Reader) error {
		for _, a := range due {
			drop, err := slotToSettle(txn, a, epoch)
			switch {
			case err != nil:
				return err
			case drop:
				work = append(work, settleItem{a, epoch})
			default:
				m.markers.add(settleItem{a, epoch})
			}
		}
		return nil
	})
	if err != nil {
		m.unsettled.add(due, epoch)
		return fmt.Errorf("settle chunk slots: %w", err)
	}
	if len(work) > 0 || force || m.markers.full() {
		work = append(work, m.markers.take()...)
	}
	for len(work) > 0 {
		n := min(len(work), settleBatch)
		err := m.settleSlots(work[:n])
		for errors.Is(err, kv.ErrTooBig) && n > 1 {
			n /= 2 // slots with many pieces to release: fewer per transaction
			err = m.settleSlots(work[:n])
		}
		if err != nil {
			for _, it := range work {
				m.unsettled.add([]slotAddr{it.slot}, it.epoch)
			}
			return err
		}
		work = work[n:]
	}
	return nil
}

// settleStored settles every slot a marker in the metadata names, as a
// last sweep (settleAll) for markers the index does not hold: left by an
// open whose recovery could not finish, or by a settle that failed.
func (m *Manager) settleStored() error {
	m.settleMu.Lock()
	defer m.settleMu.Unlock()
	var due []slotAddr
	err := m.meta.view(func(txn kv.Reader) error {
		return scan(txn, []byte{kUnsettled}, true, func(k, _ []byte) error {
			if len(k) == 17 {
				due = append(due, slotAddr{Ino(binary.BigEndian.Uint64(k[1:9])), int64(binary.BigEndian.Uint64(k[9:17]))})
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	done := m.settled.Load()
	if done == 0 {
		return nil
	}
	for _, a := range due {
		if err := m.settleSlot(a.ino, a.idx, done-1); err != nil {
			return err
		}
	}
	return nil
}

// slotAddr names one chunk slot of a file.
type slotAddr struct {
	ino Ino
	idx int64
}

// unsettledIndex remembers which slots commits marked unsettled, with the
// latest epoch of each, so that a settle finds them without a scan.
type unsettledIndex struct {
	mu    sync.Mutex
	slots map[slotAddr]uint64 // guarded by mu
}

func (u *unsettledIndex) add(as []slotAddr, epoch uint64) {
	if len(as) == 0 {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.slots == nil {
		u.slots = map[slotAddr]uint64{}
	}
	for _, a := range as {
		u.slots[a] = max(u.slots[a], epoch)
	}
}

// take removes and returns the slots whose latest commit is from epoch or
// before.
func (u *unsettledIndex) take(epoch uint64) []slotAddr {
	u.mu.Lock()
	defer u.mu.Unlock()
	var due []slotAddr
	for a, e := range u.slots {
		if e <= epoch {
			due = append(due, a)
			delete(u.slots, a)
		}
	}
	return due
}

// settleItem is a slot to settle, and the epoch its latest commit must
// not be after.
type settleItem struct {
	slot  slotAddr
	epoch uint64
}

// settleBatch bounds the slots one settling transaction takes.
const settleBatch = 64

// markerQueue holds settled slots whose only change is the deletion of
// their marker (see settle).
type markerQueue struct {
	due   []settleItem
	since time.Time // when the oldest was queued
}

// Bounds of markerQueue: past either, settle deletes the markers even
// with no other work.
const (
	markerBatch = 256
	markerWait  = time.Second
)

func (q *markerQueue) add(it settleItem) {
	if len(q.due) == 0 {
		q.since = time.Now()
	}
	q.due = append(q.due, it)
}

func (q *markerQueue) full() bool {
	return len(q.due) >= markerBatch || len(q.due) > 0 && time.Since(q.since) >= markerWait
}

func (q *markerQueue) take() []settleItem {
	due := q.due
	q.due = nil
	return due
}

// slotToSettle reports whether settling slot a (if its latest commit is
// from epoch or before) drops layers, rather than only its marker.
func slotToSettle(txn kv.Reader, a slotAddr, epoch uint64) (bool, error) {
	v, ok, err := get(txn, unsettledKey(a.ino, a.idx))
	if err != nil || !ok || len(v) < 8 || binary.BigEndian.Uint64(v) > epoch {
		return false, err
	}
	ls, ok, err := getSlot(txn, a.ino, a.idx)
	if err != nil || !ok {
		return false, err
	}
	_, hidden := ls.settle()
	return len(hidden) > 0, nil
}

// settleSlot settles one slot if its latest commit is from epoch or
// before (a later commit keeps it unsettled for its own round).
func (m *Manager) settleSlot(ino Ino, idx int64, epoch uint64) error {
	return m.settleSlots([]settleItem{{slotAddr{ino, idx}, epoch}})
}

// settleSlots settles slots in one transaction, each if its latest
// commit is from its epoch or before.
func (m *Manager) settleSlots(items []settleItem) error {
	var zero []nodes.ChunkID
	err := m.meta.tidy(func(txn kv.Txn) error {
		zero = zero[:0:0]
		for _, it := range items {
			z, err := settleInTxn(txn, it.slot.ino, it.slot.idx, it.epoch)
			if err != nil {
				return fmt.Errorf("settle chunk %d of inode %d: %w", it.slot.idx, it.slot.ino, err)
			}
			zero = append(zero, z...)
		}
		return nil
	})
	if err != nil {
		return err
	}
	m.collect(zero)
	return nil
}

// settleInTxn settles slot idx of ino in txn if its latest commit is from
// epoch or before, and returns the chunks that lost their last reference.
func settleInTxn(txn kv.Txn, ino Ino, idx int64, epoch uint64) ([]nodes.ChunkID, error) {
	key := unsettledKey(ino, idx)
	v, ok, err := get(txn, key)
	if err != nil || !ok || len(v) < 8 || binary.BigEndian.Uint64(v) > epoch {
		return nil, err
	}
	if err := del(txn, key); err != nil {
		return nil, err
	}
	old, ok, err := getSlot(txn, ino, idx)
	if err != nil || !ok {
		return nil, err
	}
	ls, hidden := old.settle()
	if len(hidden) == 0 {
		return nil, nil
	}
	n, err := getInode(txn, ino)
	if err != nil {
		return nil, err
	}
	if err := countStored(txn, &n); err != nil {
		return nil, err
	}
	zero, err := release(txn, hidden)
	if err != nil {
		return nil, err
	}
	if err := putSlot(txn, &n, idx, old, ls); err != nil {
		return nil, err
	}
	return zero, putInode(txn, &n)
}

// settleAll checkpoints until nothing is left unsettled or uncollected,
// as Close does before marking the pool clean. A few rounds suffice:
// settling releases chunks, whose deletion waits one more round.
func (m *Manager) settleAll() error {
	for i := 0; i < 4; i++ {
		if err := m.Checkpoint(); err != nil {
			return err
		}
		m.settleUpTo(true, false)
		if i == 0 {
			if err := m.settleStored(); err != nil {
				return err
			}
		}
		if !m.pendingWork() {
			return nil
		}
	}
	return nil
}
