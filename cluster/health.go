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
	id, err := nodes.ReadIdentity(rec.Path)
	if err != nil {
		return fmt.Errorf("drive check: %w", err)
	}
	if id.PoolID != m.cfg.PoolID || id.DriveID != rec.ID {
		return fmt.Errorf("drive check: %s now holds drive %s of pool %s: %w", rec.Path, id.DriveID, id.PoolID, ErrBadDrive)
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
		err = probeStore(s)
		if err != nil {
			s.Close()
			s = nil
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.rec.Offline { // taken offline meanwhile
		if s != nil {
			s.Close()
		}
		return
	}
	d.store = s
	if err != nil {
		d.failure = err
		return
	}
	d.failure = nil
	d.freeStamp.Store(0)
	m.log.Info("drive back online", "drive", rec.Name)
	m.kickHealer()
}

// probeStore writes, reads back and deletes a small unique chunk.
func probeStore(s nodes.Store) error {
	data := []byte("dhdfs drive probe " + strconv.FormatInt(time.Now().UnixNano(), 10))
	id := nodes.SumChunk(data)
	if err := s.Put(id, data); err != nil {
		return err
	}
	got, err := s.Get(id, nil)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, data) {
		return fmt.Errorf("drive probe read back wrong data")
	}
	return s.Delete(id)
}
