package cluster

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/dhdfs/dhdfs/nodes"
)

// startProber checks every drive each interval until Close: an online
// drive whose directory vanished, was unmounted or swapped is marked
// failed (Badger alone would not notice: writes to files it already has
// open keep succeeding), and a failed drive that works again comes back
// online.
func (m *Manager) startProber(interval time.Duration) {
	m.runEvery(interval, nil, func(context.Context) { m.ProbeDrives() })
}

// ProbeDrives checks every drive that is not offline once.
func (m *Manager) ProbeDrives() {
	for _, d := range m.driveList() {
		state, _ := d.state()
		switch state {
		case StateOnline:
			if err := m.checkIdentity(d.record()); err != nil {
				m.driveFailed(d, err)
			}
		case StateFailed:
			m.tryRevive(d)
		}
	}
}

func (m *Manager) checkIdentity(rec DriveRecord) error {
	at := rec.at()
	id, err := at.Identity()
	if err != nil {
		return fmt.Errorf("drive check: %w", err)
	}
	if id.PoolID != m.cfg.PoolID || id.DriveID != rec.ID {
		return fmt.Errorf("drive check: %s now holds drive %s of pool %s: %w", rec.Path, id.DriveID, id.PoolID, ErrBadDrive)
	}
	if id.HomeID != m.cfg.HomeID {
		return fmt.Errorf("drive check: %w", m.claim(at, id))
	}
	return nil
}

// tryRevive reopens a failed drive from scratch and, if a test chunk
// written to it reads back intact, brings it back online.
func (m *Manager) tryRevive(d *drive) {
	d.mu.Lock()
	rec, old := d.rec, d.store
	d.store = nil
	d.mu.Unlock()
	if old != nil {
		if err := old.Close(); err != nil {
			m.log.Debug("close failed drive", "drive", rec.Name, "err", err)
		}
	}
	s, err := m.openDriveStore(rec)
	if err == nil {
		var left nodes.ChunkID
		if left, err = probeStore(s); err != nil {
			s.Close()
			s = nil
		}
		if left != (nodes.ChunkID{}) {
			// The probe chunk is no chunk of the pool: it must not stay
			// behind once the drive works again.
			mu := &m.stripes[left[0]]
			mu.Lock()
			m.queueDeletes(left, []uint32{d.num})
			mu.Unlock()
		}
	}
	if !m.reviveWith(d, s, err) {
		return
	}
	m.log.Info("drive back online", "drive", rec.Name)
	if _, err := m.finishDeletes(context.Background(), d); err != nil {
		m.log.Warn("pending deletes", "drive", rec.Name, "err", err)
	}
	m.kickHealer()
}

// reviveWith gives failed drive d the store s reopened by tryRevive, or
// the error that reopening it ended with, and reports whether the drive is
// online again. A drive taken offline meanwhile stays so.
func (m *Manager) reviveWith(d *drive, s nodes.Store, err error) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.rec.Offline {
		if s != nil {
			s.Close()
		}
		return false
	}
	d.store = s
	if err != nil {
		d.failure = err
		return false
	}
	d.failure = nil
	d.freeStamp.Store(0)
	return true
}

// probeStore writes, reads back and deletes a small unique chunk. When it
// fails after the chunk was written, it also returns the chunk's id (else
// the zero id), for the caller to have it deleted later.
func probeStore(s nodes.Store) (nodes.ChunkID, error) {
	data := []byte("dhdfs drive probe " + strconv.FormatInt(time.Now().UnixNano(), 10))
	id := nodes.SumChunk(data) // any unique id: the probe is the drive's alone
	if err := s.Put(id, data); err != nil {
		return nodes.ChunkID{}, err
	}
	got, err := s.Get(id, nil)
	if err != nil {
		return id, err
	}
	if !bytes.Equal(got, data) {
		return id, fmt.Errorf("drive probe read back wrong data")
	}
	if err := s.Delete(id); err != nil {
		return id, err
	}
	return nodes.ChunkID{}, nil
}
