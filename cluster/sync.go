package cluster

import (
	"context"
	"time"
)

// durableClose reports whether closing a file syncs it to disk (no
// background sync configured) rather than only committing it.
func (m *Manager) durableClose() bool { return m.opts.SyncInterval <= 0 }

// markUnsynced records drives holding chunks that committed metadata names
// but that may not be on disk yet; the next Sync syncs them.
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

// Sync makes everything committed so far durable: first the drives written
// since the last Sync, then the metadata, so that once the metadata is on
// disk so are the copies it names. Syncs run one at a time, so a Sync that
// returns covers everything committed before it was called, including
// what a concurrent Sync was still writing out.
func (m *Manager) Sync() error {
	m.syncMu.Lock()
	defer m.syncMu.Unlock()
	m.unsyncedMu.Lock()
	nums := make([]uint32, 0, len(m.unsynced))
	for n := range m.unsynced {
		nums = append(nums, n)
	}
	clear(m.unsynced)
	m.unsyncedMu.Unlock()
	if err := m.syncDrives(nums); err != nil {
		m.markUnsynced(nums)
		return err
	}
	if len(nums) == 0 && !m.meta.unsynced() {
		return nil
	}
	return m.meta.sync()
}

// pendingSync reports whether Sync has anything to do.
func (m *Manager) pendingSync() bool {
	m.unsyncedMu.Lock()
	defer m.unsyncedMu.Unlock()
	return len(m.unsynced) > 0 || m.meta.unsynced()
}

// startSyncer syncs the pool every interval in the background, bounding
// what a power loss can take to that many seconds of changes.
func (m *Manager) startSyncer(interval time.Duration) {
	m.runEvery(interval, nil, func(context.Context) {
		if !m.pendingSync() {
			return
		}
		if err := m.Sync(); err != nil {
			m.log.Warn("background sync", "err", err)
		}
	})
}
