package cluster

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/dhdfs/dhdfs/cluster/kv"
	"github.com/dhdfs/dhdfs/nodes"
)

// storeChunk is stageChunk for writes (no lock held): when no drive has
// room, it makes room and tries once more. Room is what deletes freed:
// their chunks leave the drives once a round or checkpoint has made the
// deletes durable, and the space then comes back from the drives' stores
// (the reclaimer), as ext4 commits its journal and retries an allocation
// that failed with ENOSPC.
func (m *Manager) storeChunk(ctx context.Context, data []byte, want, refs int, hold bool) (staged, error) {
	st, err := m.stageChunk(ctx, data, want, refs, hold)
	if errors.Is(err, ErrNoSpace) && !st.Escaped {
		m.makeRoom()
		st, err = m.stageChunk(ctx, data, want, refs, hold)
	}
	return st, err
}

// makeRoom carries out the deletes waiting for a round and has the
// reclaimer give their space back.
func (m *Manager) makeRoom() {
	if m.pendingWork() {
		if err := m.Checkpoint(); err != nil {
			m.log.Warn("checkpoint to make room", "err", err)
		}
		m.settleNow()
	}
	m.waitReclaim()
}

// staged is a chunk stageChunk stored for a caller.
type staged struct {
	Ref ChunkRef
	// Touched are the drives written, which the caller syncs before
	// committing.
	Touched []uint32
	// Escaped means a drive call that timed out may still be reading the
	// data (see nodes.Store.Put): the caller must not reuse its buffer.
	// It can be set with an error too.
	Escaped bool
}

// stageChunk stores data as a chunk on want distinct drives (or as many as
// are online, at least one) and takes refs references on it for the
// caller (one per piece that will name it), who must either commit them
// into a file or release them. An identical chunk already stored is
// reused rather than written again. hold lets a new small chunk be held
// in memory for a sync round that follows at once (held.go).
func (m *Manager) stageChunk(ctx context.Context, data []byte, want, refs int, hold bool) (st staged, err error) {
	id := m.sum(data)
	st.Ref = ChunkRef{ID: id, Size: len(data)}
	mu := &m.stripes[id[0]]
	mu.Lock()
	defer mu.Unlock()

	rec, exists, err := m.chunkRecordOf(id)
	if err != nil {
		return st, err
	}
	// Trust only copies that a drive confirms: after a power loss the meta
	// store may name a holder whose copy never reached its disk.
	var keep, gone []uint32
	confirmed := 0
	if exists {
		for _, num := range rec.Holders {
			d := m.driveByNum(num)
			if d == nil {
				gone = append(gone, num)
				continue
			}
			st := d.usable()
			if st == nil {
				keep = append(keep, num) // cannot tell now; healing will check
				continue
			}
			ok, err := st.Has(id)
			switch {
			case err != nil:
				m.driveFailed(d, err)
				keep = append(keep, num)
			case ok:
				keep = append(keep, num)
				confirmed++
			default:
				gone = append(gone, num)
			}
		}
	}
	var written []uint32
	var sums []uint32
	if confirmed < want {
		skip := map[uint32]bool{}
		for _, num := range rec.Holders {
			skip[num] = true
		}
		// The drives check their copies with the CRC of the whole chunk:
		// combined from the block sums the record keeps, it costs no pass
		// over the bytes.
		sums = blockSums(data)
		shared := nodes.ShareCRC(id, len(data), nodes.CombineCRC32C(sums, VerifyBlock, len(data)))
		written, st.Escaped, err = m.replicate(ctx, id, data, want-confirmed, skip, keep, hold && !exists)
		shared()
		if err != nil && confirmed == 0 {
			return st, err
		}
	}
	err = m.meta.update(func(txn kv.Txn) error {
		cur, ok, err := getChunkRecord(txn, id)
		if err != nil {
			return err
		}
		if !ok {
			cur = chunkRecord{Size: len(data)}
		}
		if len(cur.Sums) == 0 {
			if sums == nil {
				sums = blockSums(data)
			}
			cur.Sums = sums
		}
		if ok && cur.Refs == 0 {
			// Taken again before the collector came: no longer to delete.
			// (A new record has no mark; deleting one would still write.)
			if err := del(txn, chunkKey(kZero, id)); err != nil {
				return err
			}
		}
		cur.Refs += uint64(refs)
		cur.Want = max(cur.Want, uint8(want))
		if err := cur.editHolders(txn, id, written, gone); err != nil {
			return err
		}
		return set(txn, chunkKey(kChunk, id), cur.encode())
	})
	if err != nil {
		return st, fmt.Errorf("record chunk %s: %w", id.Short(), err)
	}
	st.Touched = written
	return st, nil
}

// replicate puts data on n drives chosen by pickDrives, in parallel. A
// drive that fails is marked so and replaced by another until n copies
// exist or no eligible drive is left. It returns the drives that hold a
// copy; an error only when there is none. The caller holds id's stripe
// lock and records the returned drives as holders: a Put that failed may
// still have landed (a timeout, the drive taken offline under it), so
// those drives get a pending delete instead. escaped reports a Put that
// timed out and may still be reading data. hold holds a small chunk on
// drives that take it rather than putting it (held.go).
func (m *Manager) replicate(ctx context.Context, id nodes.ChunkID, data []byte, n int, skip map[uint32]bool, have []uint32, hold bool) (_ []uint32, escaped bool, _ error) {
	var got, failed []uint32
	defer func() { m.queueDeletes(id, failed) }()
	var errs []error
	noSpace := true
	// Held and journaled copies share one copy of data, which nobody
	// changes: the caller may reuse data once this returns.
	var own []byte
	if hold && len(data) <= journalChunkMax {
		own = append([]byte(nil), data...)
	}
	for len(got) < n {
		if err := ctx.Err(); err != nil {
			if len(got) > 0 {
				break // the copies made are the caller's to record
			}
			return nil, escaped, err
		}
		targets := m.pickDrives(n-len(got), len(data), skip, append(slices.Clone(have), got...))
		if len(targets) == 0 {
			break
		}
		results := make([]error, len(targets))
		tried := make([]bool, len(targets))
		var wg sync.WaitGroup
		var inline func()
		for i, d := range targets {
			skip[d.num] = true
			s := d.usable()
			if s == nil {
				results[i] = fmt.Errorf("drive %s went offline", d.record().Name)
				continue
			}
			tried[i] = true
			if hs, ok := s.(*heldStore); ok && own != nil && hs.hold(id, own) {
				continue
			}
			put := func() { results[i] = s.Put(id, data) }
			if inline == nil {
				inline = put // this goroutine puts one copy itself
				continue
			}
			wg.Go(put)
		}
		if inline != nil {
			inline()
		}
		wg.Wait()
		for i, d := range targets {
			if err := results[i]; err != nil {
				d.written.Add(-int64(len(data)))
				m.driveFailed(d, err)
				errs = append(errs, err)
				noSpace = noSpace && errors.Is(err, syscall.ENOSPC)
				escaped = escaped || errors.Is(err, nodes.ErrTimeout)
				if tried[i] {
					failed = append(failed, d.num)
				}
				continue
			}
			got = append(got, d.num)
			if own != nil {
				m.noteWrite(d.num, id, own, true)
			} else {
				m.noteWrite(d.num, id, data, false)
			}
		}
	}
	if len(got) == 0 {
		if len(errs) > 0 && noSpace {
			return nil, escaped, fmt.Errorf("write chunk %s: %w", id.Short(), ErrNoSpace)
		}
		if len(errs) > 0 {
			return nil, escaped, fmt.Errorf("write chunk %s: %w: %w", id.Short(), ErrNoDrives, errors.Join(errs...))
		}
		if m.anyOnline() {
			return nil, escaped, fmt.Errorf("write chunk %s: %w", id.Short(), ErrNoSpace)
		}
		return nil, escaped, fmt.Errorf("write chunk %s: %w", id.Short(), ErrNoDrives)
	}
	if len(got) < n {
		m.log.Debug("chunk under-replicated", "chunk", id.Short(), "copies", len(got)+len(have))
	}
	if own != nil {
		// The next small write beside this one (an append, a database
		// page) merges with it: from memory, not through its record.
		m.cache.put(id, own)
	}
	return got, escaped, nil
}

func (m *Manager) anyOnline() bool {
	for _, d := range m.driveList() {
		if d.usable() != nil {
			return true
		}
	}
	return false
}

// readChunk returns the chunk's verified content appended to buf[:0]. It
// tries each holder in turn and moves on, silently to the caller, when a
// drive is offline or failed, errors, lacks the chunk, or returns bytes
// whose checksum is wrong.
func (m *Manager) readChunk(ctx context.Context, ref ChunkRef, buf []byte) ([]byte, error) {
	return m.readChunkWith(ctx, ref, func(s nodes.Store) ([]byte, error) { return s.Get(ref.ID, buf) })
}

// readChunkWith is readChunk, fetching each holder's copy with fetch.
func (m *Manager) readChunkWith(ctx context.Context, ref ChunkRef, fetch func(nodes.Store) ([]byte, error)) ([]byte, error) {
	rec, err := m.recordForRead(ref)
	if err != nil {
		return nil, err
	}
	return m.fromHolders(ctx, ref, rec, fetch, func(data []byte) bool { return m.verifyChunk(ref, rec, data) })
}

// verifyChunk checks a chunk read from a drive. With the per-block CRC-32C
// of its record it checks those (several times cheaper than SHA-256 and
// just as sure to catch a flipped bit or a torn write on a local disk);
// records without them fall back to the hash that names the chunk.
// Scrub always checks the hash.
func (m *Manager) verifyChunk(ref ChunkRef, rec chunkRecord, data []byte) bool {
	if len(data) != ref.Size {
		return false
	}
	if len(rec.Sums) == 0 {
		return m.sum(data) == ref.ID
	}
	for i, sum := range rec.Sums {
		lo := i * VerifyBlock
		if crc32.Checksum(data[lo:min(lo+VerifyBlock, len(data))], castagnoli) != sum {
			return false
		}
	}
	return true
}

// readBlocks returns verified bytes of the chunk covering [off, off+n):
// the VerifyBlock-aligned blocks around that range, and the chunk offset
// of the first byte returned. A small read then costs a block from the
// drive and a CRC, not the whole chunk and its SHA-256.
func (m *Manager) readBlocks(ctx context.Context, ref ChunkRef, off, n int) ([]byte, int, error) {
	rec, err := m.recordForRead(ref)
	if err != nil {
		return nil, 0, err
	}
	end := min(off+n, ref.Size)
	if off >= end {
		return nil, off, nil
	}
	if len(rec.Sums) == 0 {
		data, err := m.readChunk(ctx, ref, nil)
		return data, 0, err
	}
	first, last := off/VerifyBlock, (end-1)/VerifyBlock
	start, stop := first*VerifyBlock, min((last+1)*VerifyBlock, ref.Size)
	// The blocks are read into a recycled buffer and only the bytes asked
	// for are kept: a random 4 KiB read otherwise made a 64 KiB buffer.
	// Stores never write to it after they return (WithTimeout reads into
	// its own and copies).
	buf := nodes.ReadBuf(stop - start)
	defer func() { nodes.RecycleReadBuf(buf) }()
	data, err := m.fromHolders(ctx, ref, rec,
		func(s nodes.Store) ([]byte, error) {
			b, err := s.GetRange(ref.ID, start, stop-start, buf)
			if cap(b) > cap(buf) {
				buf = b
			}
			return b, err
		},
		func(data []byte) bool {
			if len(data) != stop-start {
				return false
			}
			for b := first; b <= last; b++ {
				lo := (b - first) * VerifyBlock
				if crc32.Checksum(data[lo:min(lo+VerifyBlock, len(data))], castagnoli) != rec.Sums[b] {
					return false
				}
			}
			return true
		})
	if err != nil {
		return nil, 0, err
	}
	return append([]byte(nil), data[off-start:end-start]...), off, nil
}

func (m *Manager) recordForRead(ref ChunkRef) (chunkRecord, error) {
	rec, ok, err := m.chunkRecordOf(ref.ID)
	if err != nil {
		return rec, err
	}
	if !ok {
		return rec, fmt.Errorf("chunk %s has no record: %w", ref.ID.Short(), ErrUnavailable)
	}
	return rec, nil
}

// fromHolders fetches from each holder of the chunk in turn until a
// fetch's result passes verify.
func (m *Manager) fromHolders(ctx context.Context, ref ChunkRef, rec chunkRecord, fetch func(nodes.Store) ([]byte, error), verify func([]byte) bool) ([]byte, error) {
	tried := 0
	for _, num := range m.readOrder(rec.Holders) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		d, s := m.storeOf(num)
		if s == nil {
			continue
		}
		tried++
		start := time.Now()
		data, err := fetch(s)
		d.observeRead(time.Since(start))
		switch {
		case errors.Is(err, nodes.ErrNotFound):
			m.log.Warn("replica missing", "chunk", ref.ID.Short(), "drive", d.record().Name)
			m.reportBad(ref.ID, num)
			continue
		case err != nil:
			m.driveFailed(d, err)
			continue
		case !verify(data):
			m.log.Warn("replica corrupt", "chunk", ref.ID.Short(), "drive", d.record().Name)
			m.reportBad(ref.ID, num)
			continue
		}
		return data, nil
	}
	return nil, fmt.Errorf("chunk %s (%d copies, %d readable drives tried): %w", ref.ID.Short(), len(rec.Holders), tried, ErrUnavailable)
}

// releaseChunks drops one reference from each chunk. A chunk whose last
// reference goes is deleted from its drives.
func (m *Manager) releaseChunks(ids []nodes.ChunkID) error {
	var zero []nodes.ChunkID
	for start := 0; start < len(ids); start += m.meta.batch {
		batch := ids[start:min(start+m.meta.batch, len(ids))]
		err := m.meta.update(func(txn kv.Txn) error {
			zero = zero[:0:0]
			for _, id := range batch {
				z, err := decRef(txn, id)
				if err != nil {
					return err
				}
				if z {
					zero = append(zero, id)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		m.collect(zero)
	}
	return nil
}

// decRef drops one reference to id inside txn and reports whether it was
// the last. The record stays, marked with a zero key, until collect
// deletes the copies: a crash in between leaves the zero key to finish on.
func decRef(txn kv.Txn, id nodes.ChunkID) (bool, error) {
	rec, ok, err := getChunkRecord(txn, id)
	if err != nil || !ok || rec.Refs == 0 {
		return false, err
	}
	rec.Refs--
	if err := set(txn, chunkKey(kChunk, id), rec.encode()); err != nil {
		return false, err
	}
	if rec.Refs > 0 {
		return false, nil
	}
	return true, set(txn, chunkKey(kZero, id), nil)
}

// collectNow deletes chunks whose reference count is zero and whose
// release is durable: copies first, then the records. A copy on a drive
// that cannot delete it now (offline, failed) gets a pending delete in
// the transaction that drops the record, carried out when the drive
// returns. Chunks go collectBatch at a time, one metadata read and one
// transaction for each batch.
func (m *Manager) collectNow(ids []nodes.ChunkID) {
	for len(ids) > 0 {
		n := min(len(ids), collectBatch)
		err := m.collectSome(ids[:n])
		for errors.Is(err, kv.ErrTooBig) && n > 1 {
			n /= 2 // chunks with many holders: fewer per transaction
			err = m.collectSome(ids[:n])
		}
		if err != nil {
			m.log.Warn("collect chunks", "chunks", n, "first", ids[0].Short(), "err", err)
		}
		ids = ids[n:]
	}
}

// collectBatch bounds the chunks one collecting transaction drops: each
// takes four to six keys, and etcd refuses a transaction of more than
// 128 by default.
const collectBatch = 16

// collectSome collects ids under their stripe locks, taken in one order
// for every caller (by stripe), so that no writer takes a reference on
// one of them between the read that finds it unused and the delete.
func (m *Manager) collectSome(ids []nodes.ChunkID) error {
	var stripes [len(m.stripes)]bool
	for _, id := range ids {
		stripes[id[0]] = true
	}
	for i, ok := range stripes {
		if ok {
			m.stripes[i].Lock()
			defer m.stripes[i].Unlock()
		}
	}
	recs := make([]chunkRecord, len(ids))
	used := make([]bool, len(ids)) // taken again by a writer since its release
	err := m.meta.view(func(txn kv.Reader) error {
		for i, id := range ids {
			rec, ok, err := getChunkRecord(txn, id)
			if err != nil {
				return err
			}
			recs[i], used[i] = rec, ok && rec.Refs > 0
		}
		return nil
	})
	if err != nil {
		return err
	}
	later := make([][]uint32, len(ids))
	for i, id := range ids {
		if used[i] {
			continue
		}
		for _, num := range recs[i].Holders {
			d, s := m.storeOf(num)
			switch {
			case d == nil: // no longer a drive of the pool
			case s == nil:
				later[i] = append(later[i], num)
			default:
				if err := s.Delete(id); err != nil {
					m.driveFailed(d, err)
					later[i] = append(later[i], num)
				}
			}
		}
	}
	return m.meta.tidy(func(txn kv.Txn) error {
		for i, id := range ids {
			if !used[i] {
				if err := dropChunk(txn, id, recs[i].Holders, later[i]); err != nil {
					return err
				}
			}
			if err := del(txn, chunkKey(kZero, id)); err != nil {
				return err
			}
		}
		return nil
	})
}

// dropChunk deletes chunk id's record and its holders' index entries, and
// queues deletes for the holders in later.
func dropChunk(txn kv.Txn, id nodes.ChunkID, holders, later []uint32) error {
	for _, num := range holders {
		if err := del(txn, holdingKey(num, id)); err != nil {
			return err
		}
	}
	for _, num := range later {
		if err := queueDelete(txn, num, id); err != nil {
			return err
		}
	}
	return del(txn, chunkKey(kChunk, id))
}
