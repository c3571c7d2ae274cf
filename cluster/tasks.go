package cluster

import (
	"context"
	"time"
)

// Progress reports how far a long operation (heal, drain, scrub,
// rebalance, gc) has come. Total may grow while it runs.
type Progress struct {
	Op    string `json:"op"`
	Done  int64  `json:"done"`
	Total int64  `json:"total"`
	// Unit is what Done and Total count: UnitChunks, UnitBytes or
	// UnitDrives.
	Unit string `json:"unit,omitempty"`
	// Bytes is how much data the operation copied or read so far.
	Bytes int64 `json:"bytes"`
}

// Units of Progress.
const (
	UnitChunks = "chunks"
	UnitBytes  = "bytes"
	UnitDrives = "drives"
)

// ProgressFunc receives progress; it may be nil.
type ProgressFunc func(Progress)

func (f ProgressFunc) report(p Progress) {
	if f != nil {
		f(p)
	}
}

// throttle limits the bytes per second that background repair copies.
type throttle struct {
	rate  int64 // bytes per second; 0 is unlimited
	start time.Time
	bytes int64
}

func (t *throttle) wait(ctx context.Context, n int) error {
	if t.rate <= 0 {
		return ctx.Err()
	}
	if t.start.IsZero() {
		t.start = time.Now()
	}
	t.bytes += int64(n)
	ahead := time.Duration(float64(t.bytes)/float64(t.rate)*float64(time.Second)) - time.Since(t.start)
	if ahead <= 0 {
		return ctx.Err()
	}
	select {
	case <-time.After(ahead):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// untilClose returns a context that ends at Close (or when cancelled).
func (m *Manager) untilClose() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-m.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// runEvery calls fn every interval, and also (after a second for a burst
// of events to settle) when kick fires, until Close. fn's context ends at
// Close.
func (m *Manager) runEvery(interval time.Duration, kick <-chan struct{}, fn func(context.Context)) {
	m.loop(interval, kick, time.Second, fn)
}

// loop calls fn every interval and, settle after it fires, when kick
// fires, until Close. fn's context ends at Close.
func (m *Manager) loop(interval time.Duration, kick <-chan struct{}, settle time.Duration, fn func(context.Context)) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		ctx, cancel := m.untilClose()
		defer cancel()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-m.done:
				return
			case <-t.C:
			case <-kick:
				if settle > 0 {
					select {
					case <-time.After(settle):
					case <-m.done:
						return
					}
				}
			}
			fn(ctx)
		}
	}()
}
