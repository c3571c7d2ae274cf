package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dhdfs/dhdfs/nodes"
)

// Journals make a sync round cheap. Syncing a Badger store flushes its
// write-ahead log and its value log, two flushes; a round that synced two
// drives and the metadata store cost six. Instead, a round appends one
// record to the journal of each drive involved (nodes.Journal, one write
// and one flush) holding the small chunks written to that drive since its
// store was last synced and the metadata transactions committed since the
// last round (metalog.go), the latter on at least as many drives as the
// pool keeps copies. Drives written more than a journal should take (big
// sequential writes) are synced as before, in parallel with the appends.
//
// A checkpoint (every sync interval, at least every 30 s, sooner when a
// journal grows large, and at Close) syncs every store and the metadata
// store and then drops the journal generations it made redundant. At open,
// before anything else reads the metadata, the journals are replayed: the
// metadata transactions the store lacks, in order, and the journaled
// chunks that a record names on their drive but the drive lacks; then a
// checkpoint makes that durable.

// Bounds of what journals take.
const (
	journalChunkMax  = 256 << 10 // a larger chunk is synced in its store
	journalDriveMax  = 4 << 20   // per drive and round; past it the store is synced
	journalRotateAt  = 64 << 20  // a generation this large asks for a checkpoint
	checkpointAtMost = 30 * time.Second
)

// chunkPut is a chunk written to a drive whose store is not synced yet.
type chunkPut struct {
	ID   nodes.ChunkID
	Data []byte
}

// journalState is what the next round journals, guarded by mu.
type journalState struct {
	mu        sync.Mutex
	batches   []metaBatch           // metadata transactions neither journaled nor checkpointed
	data      map[uint32][]chunkPut // chunks written to each drive since its store was synced
	dataBytes map[uint32]int64
	big       map[uint32]bool // drives written past journalDriveMax: sync their stores
	kick      chan struct{}   // asks the checkpointer for a checkpoint
}

func (j *journalState) init() {
	j.data, j.dataBytes, j.big = map[uint32][]chunkPut{}, map[uint32]int64{}, map[uint32]bool{}
	j.kick = make(chan struct{}, 1)
}

// logBatch keeps a committed metadata transaction for the next round and
// the mirror's next increment.
// It runs under the metadata store's write lock, so batches are in order.
func (m *Manager) logBatch(seq uint64, muts []mutation) {
	m.mirLog.add(metaBatch{Seq: seq, Muts: muts})
	j := &m.jrn
	j.mu.Lock()
	j.batches = append(j.batches, metaBatch{Seq: seq, Muts: muts})
	n := len(j.batches)
	j.mu.Unlock()
	if n > 100000 {
		m.kickCheckpoint()
	}
}

// noteWrite records that chunk id was put on drive num, whose store is
// not synced: a small chunk is kept for the drive's journal, a large one
// (or too many) makes the next round sync the store instead. owned means
// nobody changes data any more: it is kept without a copy.
func (m *Manager) noteWrite(num uint32, id nodes.ChunkID, data []byte, owned bool) {
	j := &m.jrn
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.big[num] {
		return
	}
	if len(data) > journalChunkMax || j.dataBytes[num]+int64(len(data)) > journalDriveMax {
		j.big[num] = true
		delete(j.data, num)
		delete(j.dataBytes, num)
		return
	}
	if !owned {
		data = append([]byte(nil), data...)
	}
	j.data[num] = append(j.data[num], chunkPut{ID: id, Data: data})
	j.dataBytes[num] += int64(len(data))
}

// journalWork is what one round takes from journalState.
type journalWork struct {
	batches []metaBatch
	data    map[uint32][]chunkPut
	big     map[uint32]bool
}

func (m *Manager) takeJournalWork() journalWork {
	j := &m.jrn
	j.mu.Lock()
	defer j.mu.Unlock()
	w := journalWork{batches: j.batches, data: j.data, big: j.big}
	j.batches = nil
	j.data, j.dataBytes, j.big = map[uint32][]chunkPut{}, map[uint32]int64{}, map[uint32]bool{}
	return w
}

// giveBack returns work a failed round could not make durable.
func (m *Manager) giveBack(w journalWork) {
	j := &m.jrn
	j.mu.Lock()
	defer j.mu.Unlock()
	j.batches = append(w.batches, j.batches...)
	for num, puts := range w.data {
		for _, p := range puts {
			j.data[num] = append(j.data[num], p)
			j.dataBytes[num] += int64(len(p.Data))
		}
	}
	for num := range w.big {
		j.big[num] = true
	}
}

// journalOf returns drive d's journal if d is usable and has one,
// opening it the first time. A drive whose directory refuses a journal
// is synced in its store instead.
func (d *drive) journalOf() *nodes.Journal {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.store == nil || d.failure != nil {
		return nil
	}
	if d.jnl == nil && !d.jnlTried {
		d.jnlTried = true
		d.jnl, _ = d.rec.at().OpenJournal()
	}
	return d.jnl
}

// journalRound makes durable what rounds cover (see sync.go): journal
// records where drives have journals, store syncs where they do not or
// were written too much. nums are the drives commits marked unsynced.
func (m *Manager) journalRound(nums []uint32, w journalWork) error {
	type job struct {
		d   *drive
		rec []byte
	}
	var jobs []job
	var syncs []uint32
	seen := map[uint32]bool{}
	want := map[uint32]bool{}
	for _, n := range nums {
		want[n] = true
	}
	for n := range w.data {
		want[n] = true
	}
	for n := range w.big {
		want[n] = true
	}
	meta := len(w.batches) > 0
	metaCopies := 0
	record := func(d *drive, puts []chunkPut) []byte {
		b := make([]byte, 0, 64)
		if meta {
			b = append(b, 1)
			b = appendUvarint(b, uint64(len(w.batches)))
			for _, bt := range w.batches {
				b = appendBatch(b, bt)
			}
		} else {
			b = append(b, 0)
		}
		b = appendUvarint(b, uint64(len(puts)))
		for _, p := range puts {
			b = append(b, p.ID[:]...)
			b = appendUvarint(b, uint64(len(p.Data)))
			b = append(b, p.Data...)
		}
		return b
	}
	for n := range want {
		d := m.driveByNum(n)
		if d == nil {
			continue
		}
		seen[n] = true
		if jn := d.journalOf(); jn != nil && !w.big[n] {
			jobs = append(jobs, job{d, record(d, w.data[n])})
			metaCopies++
			continue
		}
		syncs = append(syncs, n)
	}
	// The metadata goes to as many journals as the pool keeps copies.
	if meta {
		for _, d := range m.driveList() {
			if metaCopies >= m.cfg.Replicas {
				break
			}
			if seen[d.num] || d.journalOf() == nil {
				continue
			}
			jobs = append(jobs, job{d, record(d, nil)})
			metaCopies++
		}
	}
	var wg sync.WaitGroup
	var syncErr, metaErr error
	if len(syncs) > 0 {
		wg.Go(func() { syncErr = m.syncDrives(syncs) })
	}
	ds := make([]*drive, len(jobs))
	recs := make([][]byte, len(jobs))
	for i, jb := range jobs {
		ds[i], recs[i] = jb.d, jb.rec
	}
	appended := m.appendJournals(ds, recs)
	wg.Wait()
	metaOK := 0
	for i, err := range appended {
		if err == nil {
			metaOK++
			continue
		}
		m.driveFailed(jobs[i].d, err)
	}
	if meta && metaOK == 0 {
		// No journal took the metadata: sync its store instead.
		metaErr = m.meta.sync()
	}
	if err := errors.Join(syncErr, metaErr); err != nil {
		// The chunks go back too: held ones (held.go) are in no store yet.
		m.giveBack(w)
		return err
	}
	return nil
}

// appendJournals appends recs[i] to the journal of ds[i], all within the
// drive timeout; errs[i] is ds[i]'s error. Journals on one device share a
// flush (nodes.AppendAll), so a drive that does not answer in time fails
// the others of its batch with it: they wait on the same disk.
func (m *Manager) appendJournals(ds []*drive, recs [][]byte) []error {
	errs := make([]error, len(ds))
	var js []*nodes.Journal
	var at []int
	for i, d := range ds {
		jn := d.journalOf()
		if jn == nil {
			errs[i] = fmt.Errorf("drive %s: no journal", d.record().Name)
			continue
		}
		js, at = append(js, jn), append(at, i)
	}
	done := make(chan []error, 1)
	sub := make([][]byte, len(at))
	for k, i := range at {
		sub[k] = recs[i]
	}
	go func() { done <- nodes.AppendAll(js, sub) }()
	var got []error
	if limit := m.opts.DriveTimeout; limit < 0 {
		got = <-done
	} else {
		t := time.NewTimer(limit)
		defer t.Stop()
		select {
		case got = <-done:
		case <-t.C:
			for _, i := range at {
				errs[i] = fmt.Errorf("journal of %s: %w (%v)", ds[i].record().Name, nodes.ErrTimeout, limit)
			}
			return errs
		}
	}
	for k, i := range at {
		errs[i] = got[k]
		if got[k] == nil && js[k].Size() > journalRotateAt {
			m.kickCheckpoint()
		}
	}
	return errs
}

func appendUvarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// kickCheckpoint asks the checkpointer for a checkpoint soon.
func (m *Manager) kickCheckpoint() {
	select {
	case m.jrn.kick <- struct{}{}:
	default:
	}
}

// Checkpoint syncs every store and the metadata store and drops the
// journal generations that made redundant.
func (m *Manager) Checkpoint() error {
	m.flushHeld()
	m.roundMu.Lock()
	defer m.roundMu.Unlock()
	epoch, _, zeros, w := m.startRound() // every store is synced below
	// New records go to new generations; the old ones are dropped once
	// the syncs below have made what they hold durable.
	rotated := map[*drive]uint64{}
	var nums []uint32
	for _, d := range m.driveList() {
		if d.usable() == nil {
			continue
		}
		nums = append(nums, d.num)
		if jn := d.journalOf(); jn != nil {
			if old, err := jn.Rotate(); err == nil {
				rotated[d] = old
			}
		}
	}
	var wg sync.WaitGroup
	var driveErr error
	var errs []error
	wg.Add(1)
	go func() {
		defer wg.Done()
		errs, driveErr = m.syncEach(nums)
	}()
	metaErr := m.meta.sync()
	wg.Wait()
	if err := errors.Join(driveErr, metaErr); err != nil {
		m.giveBack(w)
		m.markUnsynced(nums)
		m.collect(zeros)
		return err
	}
	// A drive whose store did not sync (full, failing) keeps its journal
	// generations: they may hold what its store lacks, chunks held in
	// memory among them (held.go), for the next checkpoint or open.
	unsynced := map[uint32]bool{}
	for i, err := range errs {
		unsynced[nums[i]] = err != nil
	}
	for d, old := range rotated {
		if unsynced[d.num] {
			continue
		}
		if jn := d.journalOf(); jn != nil {
			if err := jn.Drop(old); err != nil {
				m.log.Warn("drop journal", "drive", d.record().Name, "err", err)
			}
		}
	}
	m.roundDone(epoch, zeros)
	return nil
}

// startCheckpointer checkpoints every interval (at most checkpointAtMost
// apart) and when a journal grows large.
func (m *Manager) startCheckpointer(interval time.Duration) {
	if interval <= 0 || interval > checkpointAtMost {
		interval = checkpointAtMost
	}
	m.loop(interval, m.jrn.kick, 0, func(context.Context) {
		if !m.pendingWork() && !m.journalsUsed() {
			return
		}
		if err := m.Checkpoint(); err != nil {
			m.log.Warn("checkpoint", "err", err)
		}
	})
}

// journalsUsed reports whether any journal holds records.
func (m *Manager) journalsUsed() bool {
	for _, d := range m.driveList() {
		if jn := d.journalOf(); jn != nil && jn.Size() > 0 {
			return true
		}
	}
	return false
}

// replayJournals applies what the drives' journals hold and the stores
// lack: metadata transactions after the store's last one, in order, then
// journaled chunks, on every holder the chunk's record names. It runs at open
// before anything reads the metadata, and ends with a checkpoint.
func (m *Manager) replayJournals() error {
	batches := map[uint64]metaBatch{}
	var puts []chunkPut
	found := false
	for _, d := range m.driveList() {
		jn := d.journalOf()
		if jn == nil {
			continue
		}
		err := jn.Replay(func(_ uint64, rec []byte) error {
			found = true
			dec := decoder{b: rec}
			if dec.byte1() == 1 {
				n := dec.uvarint()
				for i := uint64(0); i < n && dec.err == nil; i++ {
					b := readBatch(&dec)
					if dec.err == nil {
						batches[b.Seq] = b
					}
				}
			}
			n := dec.uvarint()
			for i := uint64(0); i < n && dec.err == nil; i++ {
				var cp chunkPut
				copy(cp.ID[:], dec.bytes(uint64(len(cp.ID))))
				cp.Data = append([]byte(nil), dec.bytes(dec.uvarint())...)
				if dec.err == nil {
					puts = append(puts, cp)
				}
			}
			if dec.err != nil {
				return fmt.Errorf("journal of %s: %w", d.record().Name, dec.err)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if !found {
		return nil
	}
	applied := 0
	for seq := m.meta.seqNow() + 1; ; seq++ {
		b, ok := batches[seq]
		if !ok {
			break
		}
		if _, err := m.meta.apply(b); err != nil {
			return err
		}
		applied++
	}
	// A journaled chunk goes back to every holder that lacks it, not only
	// to the drive whose journal held it: a chunk held in memory for a
	// round (held.go) reaches a store only through journals, and a process
	// killed between two drives' appends left it in one journal.
	restored := 0
	done := map[nodes.ChunkID]bool{}
	for _, cp := range puts {
		if done[cp.ID] {
			continue
		}
		done[cp.ID] = true
		rec, ok, err := m.chunkRecordOf(cp.ID)
		if err != nil {
			return err
		}
		if !ok || m.sum(cp.Data) != cp.ID {
			continue
		}
		for _, num := range rec.Holders {
			d, s := m.storeOf(num)
			if s == nil {
				continue
			}
			if has, err := s.Has(cp.ID); err == nil && !has {
				if err := s.Put(cp.ID, cp.Data); err != nil {
					m.driveFailed(d, err)
					continue
				}
				restored++
			}
		}
	}
	if applied+restored > 0 {
		m.log.Info("replayed journals", "metadata_transactions", applied, "chunks", restored)
	}
	return m.Checkpoint()
}
