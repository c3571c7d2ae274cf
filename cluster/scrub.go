package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/dhdfs/dhdfs/nodes"
)

// ScrubReport says what a scrub found and fixed.
type ScrubReport struct {
	Drives   int   `json:"drives"`
	Verified int64 `json:"verified"`
	Bytes    int64 `json:"bytes"`
	// Corrupt copies failed their checksum; Missing copies were recorded but
	// absent; Repaired of those were rewritten from a good copy.
	Corrupt  int64 `json:"corrupt"`
	Missing  int64 `json:"missing"`
	Repaired int64 `json:"repaired"`
	// Orphans were copies no record names (left by crashes, or queued for
	// deletion while their drive was away); they were deleted.
	Orphans int64 `json:"orphans"`
}

// Scrub reads every copy on every online drive and checks it against its
// checksum, rewrites corrupt and missing copies from good ones, deletes
// copies nothing refers to, and records when each drive was last fully
// verified. It is throttled by Options.RepairRate.
func (m *Manager) Scrub(ctx context.Context, progress ProgressFunc) (ScrubReport, error) {
	m.healMu.Lock()
	defer m.healMu.Unlock()
	var rep ScrubReport
	n, err := m.finishAllDeletes(ctx)
	rep.Orphans += int64(n)
	if err != nil {
		return rep, err
	}
	t := throttle{rate: m.opts.RepairRate}
	p := Progress{Op: "scrub", Unit: UnitChunks}
	for _, d := range m.driveList() {
		if d.usable() == nil {
			continue
		}
		expected, err := m.holdingsOf(d.num)
		if err != nil {
			return rep, err
		}
		p.Total += int64(len(expected))
	}
	progress.report(p)
	for _, d := range m.driveList() {
		s := d.usable()
		if s == nil {
			continue
		}
		if err := m.scrubDrive(ctx, d, s, &rep, &p, &t, progress); err != nil {
			return rep, err
		}
		rep.Drives++
		if err := m.updateDriveRecord(d, func(r *DriveRecord) { r.Verified = time.Now().UTC().Truncate(time.Second) }); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

func (m *Manager) scrubDrive(ctx context.Context, d *drive, s nodes.Store, rep *ScrubReport, p *Progress, t *throttle, progress ProgressFunc) error {
	expected, err := m.holdingsOf(d.num)
	if err != nil {
		return err
	}
	want := map[nodes.ChunkID]bool{}
	for _, id := range expected {
		want[id] = true
	}
	// List first: fixing copies inside Iterate would nest store calls.
	var present []nodes.ChunkID
	if err := s.Iterate(func(id nodes.ChunkID, _ int64) error {
		present = append(present, id)
		return nil
	}); err != nil {
		m.driveFailed(d, err)
		return nil
	}
	seen := map[nodes.ChunkID]bool{}
	var buf []byte
	for _, id := range present {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !want[id] {
			if m.deleteOrphan(d, s, id) {
				rep.Orphans++
			}
			continue
		}
		seen[id] = true
		data, err := s.Get(id, buf)
		if err != nil && !errors.Is(err, nodes.ErrNotFound) {
			m.driveFailed(d, err)
			return nil
		}
		if err == nil {
			buf = data
			rep.Bytes += int64(len(data))
			p.Bytes += int64(len(data))
		}
		if err != nil || m.sum(data) != id {
			rep.Corrupt++
			if m.repairCopy(ctx, d, id) {
				rep.Repaired++
			}
		}
		rep.Verified++
		p.Done++
		progress.report(*p)
		if err := t.wait(ctx, len(data)); err != nil {
			return err
		}
	}
	for _, id := range expected {
		if seen[id] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rep.Missing++
		if m.repairCopy(ctx, d, id) {
			rep.Repaired++
		}
		p.Done++
		progress.report(*p)
	}
	return nil
}

// repairCopy rewrites drive d's copy of id from a verified copy elsewhere.
func (m *Manager) repairCopy(ctx context.Context, d *drive, id nodes.ChunkID) bool {
	mu := &m.stripes[id[0]]
	mu.Lock()
	defer mu.Unlock()
	rec, ok, err := m.chunkRecordOf(id)
	if err != nil || !ok || !rec.holds(d.num) {
		return false
	}
	data, err := m.readChunk(ctx, ChunkRef{ID: id, Size: rec.Size}, nil)
	if err != nil {
		m.log.Error("no good copy to repair from", "chunk", id.Short(), "drive", d.record().Name, "err", err)
		return false
	}
	if len(m.copyTo(id, data, []*drive{d})) != 1 {
		return false
	}
	m.clearBad(id, d.num)
	m.log.Info("repaired copy", "chunk", id.Short(), "drive", d.record().Name)
	return true
}

// deleteOrphan deletes drive d's copy of id if no record names d as its
// holder; the stripe lock keeps a writer from recording it meanwhile.
func (m *Manager) deleteOrphan(d *drive, s nodes.Store, id nodes.ChunkID) bool {
	mu := &m.stripes[id[0]]
	mu.Lock()
	defer mu.Unlock()
	rec, ok, err := m.chunkRecordOf(id)
	if err != nil || (ok && rec.holds(d.num)) {
		return false
	}
	if err := s.Delete(id); err != nil {
		m.driveFailed(d, err)
		return false
	}
	return true
}

// sweepOrphans deletes drive d's copies that no record names: left by a
// write that died between storing its copies and recording them, or on a
// drive that was replaced while away.
func (m *Manager) sweepOrphans(d *drive, s nodes.Store) (int, error) {
	var ids []nodes.ChunkID
	if err := s.Iterate(func(id nodes.ChunkID, _ int64) error { ids = append(ids, id); return nil }); err != nil {
		m.driveFailed(d, err)
		return 0, err
	}
	n := 0
	for _, id := range ids {
		rec, ok, err := m.chunkRecordOf(id)
		if err == nil && (!ok || !rec.holds(d.num)) && m.deleteOrphan(d, s, id) {
			n++
		}
	}
	return n, nil
}

// startScrubber scrubs every interval until Close.
func (m *Manager) startScrubber(interval time.Duration) {
	m.runEvery(interval, nil, func(ctx context.Context) {
		rep, err := m.Scrub(ctx, nil)
		if err != nil && !errors.Is(err, context.Canceled) {
			m.log.Warn("background scrub", "err", err)
		}
		m.log.Info("scrub done", "drives", rep.Drives, "verified", rep.Verified, "corrupt", rep.Corrupt,
			"missing", rep.Missing, "repaired", rep.Repaired, "orphans", rep.Orphans)
	})
}
