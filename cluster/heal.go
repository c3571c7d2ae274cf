package cluster

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dhdfs/dhdfs/cluster/kv"
	"github.com/dhdfs/dhdfs/nodes"
)

// HealReport says what a heal pass did.
type HealReport struct {
	// Checked chunks; Copied new copies made; Repaired bad copies rewritten
	// in place; Trimmed extra copies removed; Unrecoverable chunks with no
	// readable copy; Waiting chunks whose missing copies are on drives down
	// for less than the grace period.
	Checked       int64 `json:"checked"`
	Copied        int64 `json:"copied"`
	Repaired      int64 `json:"repaired"`
	Trimmed       int64 `json:"trimmed"`
	Unrecoverable int64 `json:"unrecoverable"`
	Waiting       int64 `json:"waiting"`
	Bytes         int64 `json:"bytes"`
}

// copyState sorts a chunk's holders for healing.
type copyState struct {
	healthy []uint32 // on online (or draining) drives, not known bad
	bad     []uint32 // on online drives, known missing or corrupt
	grace   []uint32 // on drives down for less than HealAfter
	gone    []uint32 // on drives down longer, or no longer in the pool
}

func (m *Manager) classify(id nodes.ChunkID, holders []uint32, now time.Time) copyState {
	var cs copyState
	for _, num := range holders {
		d := m.driveByNum(num)
		switch {
		case d == nil:
			cs.gone = append(cs.gone, num)
		case d.usable() != nil:
			if m.isBad(id, num) {
				cs.bad = append(cs.bad, num)
			} else {
				cs.healthy = append(cs.healthy, num)
			}
		case now.Sub(d.downSince()) < m.opts.HealAfter:
			cs.grace = append(cs.grace, num)
		default:
			cs.gone = append(cs.gone, num)
		}
	}
	return cs
}

// chunkWants computes, for every referenced chunk, the largest replication
// factor of the files using it.
func (m *Manager) chunkWants(txn kv.Reader) (map[nodes.ChunkID]uint8, error) {
	inoWant := map[Ino]uint8{}
	err := scan(txn, []byte{kInode}, false, func(k, v []byte) error {
		if len(k) != 9 {
			return nil
		}
		n, err := decodeInode(Ino(binary.BigEndian.Uint64(k[1:])), v)
		if err != nil {
			return err
		}
		if n.IsRegular() {
			inoWant[n.Ino] = uint8(m.wantFor(&n))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	wants := map[nodes.ChunkID]uint8{}
	err = scanSlots(txn, nil, func(ino Ino, _ int64, ls layers) error {
		w := inoWant[ino]
		if w == 0 {
			w = uint8(m.cfg.Replicas)
		}
		for _, ref := range ls.refs() {
			wants[ref.ID] = max(wants[ref.ID], w)
		}
		return nil
	})
	return wants, err
}

type healTask struct {
	id      nodes.ChunkID
	healthy int
}

// Heal brings every chunk to its files' replication factor: missing copies
// are made on other eligible drives from a verified copy, riskiest chunks
// (fewest healthy copies) first; bad copies are rewritten; copies on drives
// down past the grace period are replaced and forgotten; extra copies are
// trimmed. It is safe to stop (ctx) and run again.
func (m *Manager) Heal(ctx context.Context, progress ProgressFunc) (HealReport, error) {
	m.healMu.Lock()
	defer m.healMu.Unlock()
	var rep HealReport
	// Carry out deletes queued for drives that are usable now: those
	// their return did not finish (a busy drive, an error) are retried
	// by every pass.
	if _, err := m.finishAllDeletes(ctx); err != nil {
		return rep, fmt.Errorf("heal: %w", err)
	}
	var tasks []healTask
	wants := map[nodes.ChunkID]uint8{}
	now := time.Now()
	err := m.meta.paged(func(txn kv.Reader) error {
		var err error
		if wants, err = m.chunkWants(txn); err != nil {
			return err
		}
		return scan(txn, []byte{kChunk}, false, func(k, v []byte) error {
			rec, err := decodeChunkRecord(v)
			if err != nil || rec.Refs == 0 {
				return err
			}
			var id nodes.ChunkID
			copy(id[:], k[1:])
			rep.Checked++
			want := int(max(wants[id], 1))
			cs := m.classify(id, rec.Holders, now)
			if len(cs.grace) > 0 && len(cs.healthy) < want {
				rep.Waiting++ // its missing copies may come back
			}
			if len(cs.bad) > 0 || len(cs.gone) > 0 || len(cs.healthy)+len(cs.grace) < want ||
				(len(cs.healthy) > want && len(cs.grace) == 0) || int(rec.Want) != want {
				tasks = append(tasks, healTask{id: id, healthy: len(cs.healthy)})
			}
			return nil
		})
	})
	if err != nil {
		return rep, fmt.Errorf("heal: %w", err)
	}
	slices.SortStableFunc(tasks, func(a, b healTask) int { return cmp.Compare(a.healthy, b.healthy) })
	t := throttle{rate: m.opts.RepairRate}
	p := Progress{Op: "heal", Total: int64(len(tasks)), Unit: UnitChunks}
	progress.report(p)
	for _, task := range tasks {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		n, err := m.healChunk(ctx, task.id, int(max(wants[task.id], 1)), &rep)
		if err != nil {
			m.log.Warn("heal chunk", "chunk", task.id.Short(), "err", err)
		}
		p.Done++
		p.Bytes += int64(n)
		progress.report(p)
		if err := t.wait(ctx, n); err != nil {
			return rep, err
		}
	}
	rep.Bytes = p.Bytes
	if rep.Copied+rep.Repaired+rep.Trimmed > 0 {
		m.log.Info("heal pass", "copied", rep.Copied, "repaired", rep.Repaired, "trimmed", rep.Trimmed,
			"unrecoverable", rep.Unrecoverable, "waiting", rep.Waiting)
	}
	return rep, nil
}

// healChunk does the work for one chunk and returns the bytes it copied.
func (m *Manager) healChunk(ctx context.Context, id nodes.ChunkID, want int, rep *HealReport) (int, error) {
	mu := &m.stripes[id[0]]
	mu.Lock()
	defer mu.Unlock()
	rec, ok, err := m.chunkRecordOf(id)
	if err != nil || !ok || rec.Refs == 0 {
		return 0, err
	}
	cs := m.classify(id, rec.Holders, time.Now())
	var data []byte
	load := func() error {
		if data != nil {
			return nil
		}
		data, err = m.readChunk(ctx, ChunkRef{ID: id, Size: rec.Size}, nil)
		return err
	}
	copied := 0
	// Rewrite bad copies in place.
	for _, num := range cs.bad {
		if err := load(); err != nil {
			break
		}
		if got := m.copyTo(id, data, []*drive{m.driveByNum(num)}); len(got) == 1 {
			m.clearBad(id, num)
			cs.healthy = append(cs.healthy, num)
			rep.Repaired++
			copied += len(data)
		} else {
			cs.gone = append(cs.gone, num)
		}
	}
	// Make missing copies.
	var added []uint32
	if need := want - len(cs.healthy) - len(cs.grace); need > 0 {
		if len(cs.healthy) == 0 {
			if len(cs.grace) == 0 {
				rep.Unrecoverable++
			}
			return copied, nil
		}
		if err := load(); err != nil {
			rep.Unrecoverable++
			return copied, err
		}
		skip := map[uint32]bool{}
		for _, h := range rec.Holders {
			skip[h] = true
		}
		targets := m.pickDrives(need, len(data), skip, cs.healthy)
		added = m.copyTo(id, data, targets)
		rep.Copied += int64(len(added))
		copied += len(data) * len(added)
		cs.healthy = append(cs.healthy, added...)
	}
	// Forget copies on drives gone for good once enough copies exist
	// elsewhere (or none can be made); setHolders queues their deletion
	// for when the drive returns.
	remove := cs.gone
	// Trim extra copies when every holder is accounted for.
	var victims []uint32
	if extra := len(cs.healthy) - want; extra > 0 && len(cs.grace) == 0 {
		victims = m.trimChoice(cs.healthy, extra)
		remove = append(remove, victims...)
		rep.Trimmed += int64(len(victims))
	}
	if err := m.setHolders(id, added, remove, uint8(want)); err != nil {
		return copied, err
	}
	for _, num := range victims {
		if d := m.driveByNum(num); d != nil {
			if _, err := m.finishDelete(d, id); err != nil {
				m.log.Warn("trim copy", "chunk", id.Short(), "drive", d.record().Name, "err", err)
			}
		}
	}
	return copied, nil
}

// trimChoice picks n of holders to drop: copies sharing a device with
// another copy first, then those on the fullest drives.
func (m *Manager) trimChoice(holders []uint32, n int) []uint32 {
	type cand struct {
		num    uint32
		shared bool
		used   int64
	}
	devs := map[string]int{}
	for _, h := range holders {
		if d := m.driveByNum(h); d != nil {
			devs[d.record().domain()]++
		}
	}
	var cands []cand
	for _, h := range holders {
		d := m.driveByNum(h)
		if d == nil {
			continue
		}
		cands = append(cands, cand{num: h, shared: devs[d.record().domain()] > 1, used: d.written.Load()})
	}
	slices.SortFunc(cands, func(a, b cand) int {
		if a.shared != b.shared {
			if a.shared {
				return -1
			}
			return 1
		}
		return cmp.Compare(b.used, a.used)
	})
	out := make([]uint32, 0, n)
	for _, c := range cands[:min(n, len(cands))] {
		out = append(out, c.num)
	}
	return out
}

// startHealer runs Heal every interval, and soon after a kick, until Close.
func (m *Manager) startHealer(interval time.Duration) {
	m.runEvery(interval, m.healKick, func(ctx context.Context) {
		if _, err := m.Heal(ctx, nil); err != nil && !errors.Is(err, context.Canceled) {
			m.log.Warn("background heal", "err", err)
		}
	})
}
