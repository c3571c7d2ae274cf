package cluster

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/dhdfs/dhdfs/cluster/kv"
	"github.com/dhdfs/dhdfs/nodes"
)

// MoveReport says what a drain, replace or rebalance moved.
type MoveReport struct {
	Chunks int64 `json:"chunks"`
	Bytes  int64 `json:"bytes"`
	// Stuck chunks could not be moved (no readable copy, or no drive with
	// room that does not already hold one).
	Stuck int64 `json:"stuck"`
}

// Drain empties a drive while it stays readable: it takes no new chunks,
// and each chunk it holds gets its copies elsewhere (made from a verified
// copy) before the drive's copy is deleted. Afterwards RemoveDrive
// succeeds. Stopping and running again resumes.
func (m *Manager) Drain(ctx context.Context, name string, progress ProgressFunc) (MoveReport, error) {
	return m.drainTo(ctx, name, nil, progress)
}

// drainTo drains drive name; if to is set, copies go to that drive
// whenever it has room and no copy yet.
func (m *Manager) drainTo(ctx context.Context, name string, to *drive, progress ProgressFunc) (MoveReport, error) {
	m.healMu.Lock()
	defer m.healMu.Unlock()
	var rep MoveReport
	d, err := m.driveByName(name)
	if err != nil {
		return rep, err
	}
	if err := m.updateDriveRecord(d, func(r *DriveRecord) { r.Draining = true }); err != nil {
		return rep, err
	}
	ids, err := m.holdingsOf(d.num)
	if err != nil {
		return rep, err
	}
	wants := map[nodes.ChunkID]uint8{}
	if err := m.meta.paged(func(txn kv.Reader) error { wants, err = m.chunkWants(txn); return err }); err != nil {
		return rep, err
	}
	t := throttle{rate: m.opts.RepairRate}
	p := Progress{Op: "drain " + d.record().Name, Total: int64(len(ids)), Unit: UnitChunks}
	progress.report(p)
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		n, err := m.moveOff(ctx, id, d, to, int(max(wants[id], 1)))
		if err != nil {
			rep.Stuck++
			m.log.Warn("drain chunk", "chunk", id.Short(), "drive", d.record().Name, "err", err)
		} else {
			rep.Chunks++
			rep.Bytes += int64(n)
		}
		p.Done++
		p.Bytes = rep.Bytes
		progress.report(p)
		if err := t.wait(ctx, n); err != nil {
			return rep, err
		}
	}
	if rep.Stuck > 0 {
		return rep, fmt.Errorf("drain %s: %d chunks could not be moved (see the log); run drain again once drives are back or added", name, rep.Stuck)
	}
	return rep, nil
}

// moveOff makes sure chunk id has enough copies besides the one on from,
// then forgets and deletes that copy. It returns the bytes copied.
func (m *Manager) moveOff(ctx context.Context, id nodes.ChunkID, from, to *drive, want int) (int, error) {
	mu := &m.stripes[id[0]]
	mu.Lock()
	defer mu.Unlock()
	rec, ok, err := m.chunkRecordOf(id)
	if err != nil || !ok || !rec.holds(from.num) {
		return 0, err
	}
	cs := m.classify(id, slices.DeleteFunc(slices.Clone(rec.Holders), func(h uint32) bool { return h == from.num }), time.Now())
	var added []uint32
	copied := 0
	if need := want - len(cs.healthy); need > 0 && rec.Refs > 0 {
		data, err := m.readChunk(ctx, ChunkRef{ID: id, Size: rec.Size}, nil)
		if err != nil {
			return 0, err
		}
		skip := map[uint32]bool{}
		for _, h := range rec.Holders {
			skip[h] = true
		}
		var targets []*drive
		if to != nil && !skip[to.num] && to.placeable() && to.freeBytes()-to.reserve() > int64(len(data)) {
			targets = append(targets, to)
			skip[to.num] = true
			need--
		}
		if need > 0 {
			targets = append(targets, m.pickDrives(need, len(data), skip, cs.healthy)...)
		}
		added = m.copyTo(id, data, targets)
		copied = len(data) * len(added)
		if have := len(cs.healthy) + len(added); have < want {
			// Dropping from's copy now would leave the chunk short of
			// copies: it stays, readable, until a drive can take one.
			if len(added) > 0 {
				if err := m.setHolders(id, added, nil, 0); err != nil {
					return copied, err
				}
			}
			return copied, fmt.Errorf("%d of %d copies elsewhere and no other drive with room that holds none yet: the copy stays", have, want)
		}
	}
	if err := m.setHolders(id, added, []uint32{from.num}, 0); err != nil {
		return copied, err
	}
	// setHolders queued the copy's delete; carry it out now if we can.
	if _, err := m.finishDelete(from, id); err != nil {
		m.log.Warn("delete moved copy", "chunk", id.Short(), "err", err)
	}
	return copied, nil
}

// Replace adds the directory newPath as a drive, copies every chunk of
// drive old directly to it (falling back to other drives when it is full),
// and removes old.
func (m *Manager) Replace(ctx context.Context, old, newPath string, o AddDriveOptions, progress ProgressFunc) (MoveReport, error) {
	od, err := m.driveByName(old)
	if err != nil {
		return MoveReport{}, err
	}
	var nd *drive
	if d, err := m.driveByName(o.Name); o.Name != "" && err == nil && d.record().Path == mustResolve(newPath) {
		nd = d // resuming an interrupted replace
	} else {
		if o.Reserve == 0 {
			o.Reserve = od.record().Reserve // the new drive keeps the old one's setting
		}
		info, _, err := m.AddDrive(newPath, o)
		if err != nil {
			return MoveReport{}, err
		}
		if nd, err = m.driveByName(info.Name); err != nil {
			return MoveReport{}, err
		}
	}
	rep, err := m.drainTo(ctx, old, nd, progress)
	if err != nil {
		return rep, err
	}
	_, err = m.RemoveDrive(old, false)
	return rep, err
}

func mustResolve(p string) string {
	r, err := resolveDrive(p)
	if err != nil {
		return p
	}
	return r
}

// Rebalance moves chunks from the fullest drives to the emptiest until
// every online drive holds its share of the data (in proportion to its
// capacity) within threshold (0.1 = 10%). A copy is always made before the
// old one is dropped, so redundancy never falls.
func (m *Manager) Rebalance(ctx context.Context, threshold float64, progress ProgressFunc) (MoveReport, error) {
	m.healMu.Lock()
	defer m.healMu.Unlock()
	var rep MoveReport
	type load struct {
		d        *drive
		held     int64
		capacity int64
		ids      []nodes.ChunkID
	}
	var loads []*load
	var total, capacity int64
	sizes := map[nodes.ChunkID]int{}
	for _, d := range m.driveList() {
		if !d.placeable() {
			continue
		}
		ids, err := m.holdingsOf(d.num)
		if err != nil {
			return rep, err
		}
		l := &load{d: d, ids: ids}
		for _, id := range ids {
			if _, ok := sizes[id]; !ok {
				rec, _, _ := m.chunkRecordOf(id)
				sizes[id] = rec.Size
			}
			l.held += int64(sizes[id])
		}
		l.capacity = l.held + max(d.freeBytes()-d.reserve(), 0)
		total += l.held
		capacity += l.capacity
		loads = append(loads, l)
	}
	if len(loads) < 2 || capacity == 0 {
		return rep, nil
	}
	target := func(l *load) int64 { return int64(float64(total) * float64(l.capacity) / float64(capacity)) }
	excess := func(l *load) int64 { return l.held - target(l) }
	// A drive within slack of its share is balanced: what is to move is
	// the excess beyond it. When the moves end, the last report says all
	// of it went, since what is left is within the slack.
	slack := max(int64(threshold*float64(total)/float64(len(loads))), int64(m.cfg.ChunkSize))
	p := Progress{Op: "rebalance", Unit: UnitBytes}
	for _, l := range loads {
		p.Total += max(excess(l)-slack, 0)
	}
	progress.report(p)
	defer func() {
		if ctx.Err() == nil { // an interrupted rebalance did not finish
			p.Total = p.Done
			progress.report(p)
		}
	}()
	t := throttle{rate: m.opts.RepairRate}
	for {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		slices.SortFunc(loads, func(a, b *load) int { return cmp.Compare(excess(b), excess(a)) })
		src, dst := loads[0], loads[len(loads)-1]
		if excess(src) <= slack || excess(dst) >= 0 {
			return rep, nil
		}
		moved := false
		for len(src.ids) > 0 {
			id := src.ids[len(src.ids)-1]
			src.ids = src.ids[:len(src.ids)-1]
			n, ok, err := m.moveChunk(ctx, id, src.d, dst.d)
			if err != nil {
				m.log.Warn("rebalance chunk", "chunk", id.Short(), "err", err)
			}
			if ok {
				src.held -= int64(sizes[id])
				dst.held += int64(sizes[id])
				dst.ids = append(dst.ids, id)
				rep.Chunks++
				rep.Bytes += int64(n)
				p.Done += int64(n)
				p.Total = max(p.Total, p.Done)
				p.Bytes = rep.Bytes
				progress.report(p)
				if err := t.wait(ctx, n); err != nil {
					return rep, err
				}
				moved = true
				break
			}
		}
		if !moved {
			return rep, nil // nothing on src can go to dst
		}
	}
}

// moveChunk copies id from src to dst, then drops src's copy. It skips
// chunks dst already holds and moves that would put two copies on one
// device when they were on distinct ones.
func (m *Manager) moveChunk(ctx context.Context, id nodes.ChunkID, src, dst *drive) (int, bool, error) {
	mu := &m.stripes[id[0]]
	mu.Lock()
	defer mu.Unlock()
	rec, ok, err := m.chunkRecordOf(id)
	if err != nil || !ok || rec.Refs == 0 || !rec.holds(src.num) || rec.holds(dst.num) {
		return 0, false, err
	}
	dstDev := dst.record().domain()
	for _, h := range rec.Holders {
		if d := m.driveByNum(h); d != nil && h != src.num && d.record().domain() == dstDev && src.record().domain() != dstDev {
			return 0, false, nil
		}
	}
	if dst.freeBytes()-dst.reserve() < int64(rec.Size) {
		return 0, false, nil // dst has no room beyond its reserve
	}
	data, err := m.readChunk(ctx, ChunkRef{ID: id, Size: rec.Size}, nil)
	if err != nil {
		return 0, false, err
	}
	if len(m.copyTo(id, data, []*drive{dst})) != 1 {
		return 0, false, fmt.Errorf("copy to %s failed", dst.record().Name)
	}
	if err := m.setHolders(id, []uint32{dst.num}, []uint32{src.num}, 0); err != nil {
		return len(data), false, err
	}
	// setHolders queued the copy's delete; carry it out now if we can.
	if _, err := m.finishDelete(src, id); err != nil {
		m.log.Warn("delete moved copy", "chunk", id.Short(), "err", err)
	}
	dst.written.Add(int64(len(data)))
	src.written.Add(-int64(len(data)))
	return len(data), true, nil
}
