package cluster

import (
	"context"
	"fmt"

	"github.com/dhdfs/dhdfs/nodes"
)

// GCReport says what gc reclaimed.
type GCReport struct {
	Orphans     int64 `json:"orphans"`
	Collected   int64 `json:"collected"`
	UsedBefore  int64 `json:"used_before_bytes"`
	UsedAfter   int64 `json:"used_after_bytes"`
	DrivesSwept int   `json:"drives"`
}

// GC gives space back: chunks whose last reference went are collected,
// pending deletes are carried out, copies no record names are deleted
// from the drives, and each drive's store compacts so the filesystem sees
// the space free.
func (m *Manager) GC(ctx context.Context, progress ProgressFunc) (GCReport, error) {
	m.healMu.Lock()
	defer m.healMu.Unlock()
	var rep GCReport
	zero, err := m.zeroChunks()
	if err != nil {
		return rep, err
	}
	m.collect(zero)
	rep.Collected = int64(len(zero))
	// Chunks are deleted once the change that freed them is durable: a
	// round or two makes that so now.
	if err := m.settleAll(); err != nil {
		return rep, err
	}
	n, err := m.finishAllDeletes(ctx)
	rep.Orphans += int64(n)
	if err != nil {
		return rep, err
	}
	drives := m.driveList()
	p := Progress{Op: "gc", Total: int64(len(drives)), Unit: UnitDrives}
	progress.report(p)
	for _, d := range drives {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		s := d.usable()
		if s == nil {
			continue
		}
		if u, err := s.Usage(); err == nil {
			rep.UsedBefore += u.Used
		}
		n, err := m.sweepOrphans(d, s)
		rep.Orphans += int64(n)
		if err != nil {
			continue
		}
		if gc, ok := s.(nodes.GarbageCollector); ok {
			if err := gc.CollectGarbage(); err != nil {
				m.driveFailed(d, fmt.Errorf("collect garbage: %w", err))
				continue
			}
			d.freeStamp.Store(0) // placement measures the free space afresh
		}
		if u, err := s.Usage(); err == nil {
			rep.UsedAfter += u.Used
		}
		rep.DrivesSwept++
		p.Done++
		progress.report(p)
	}
	return rep, nil
}
