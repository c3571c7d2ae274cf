package cluster

import (
	"github.com/dhdfs/dhdfs/cluster/kv"
)

// An inode with no name left (unlinked while open, a put in progress, an
// O_TMPFILE) is marked an orphan in the same transaction that removed its
// last name; it is freed when no handle has it open and the kernel has
// forgotten it, or at the next open after a crash.

// Hold records that the kernel knows inode ino (it was looked up or
// created through the mount). Like a local filesystem, dhdfs keeps an
// unlinked inode until the kernel forgets it, not only until its last
// handle closes: a process may still fstat or open it.
func (m *Manager) Hold(ino Ino) {
	m.filesMu.Lock()
	m.held[ino] = struct{}{}
	m.filesMu.Unlock()
}

// Forget undoes Hold when the kernel forgets ino, freeing it if it has no
// name and no open handle left.
func (m *Manager) Forget(ino Ino) error {
	m.filesMu.Lock()
	delete(m.held, ino)
	m.filesMu.Unlock()
	return m.maybeFree(ino)
}

// maybeFree frees ino if it is an orphan that is neither open nor held.
func (m *Manager) maybeFree(ino Ino) error {
	if ino == 0 {
		return nil
	}
	m.filesMu.Lock()
	_, held := m.held[ino]
	_, open := m.files[ino]
	m.filesMu.Unlock()
	if held || open {
		return nil
	}
	return m.freeOrphan(ino)
}

// freeOrphan deletes an inode that has no name: its chunks, then itself.
func (m *Manager) freeOrphan(ino Ino) error {
	var isOrphan bool
	err := m.meta.view(func(txn kv.Reader) error {
		_, ok, err := get(txn, inoKey(kOrphan, ino))
		isOrphan = ok
		return err
	})
	if err != nil || !isOrphan {
		return err
	}
	if err := m.dropChunksFrom(ino, 0, 0); err != nil {
		return err
	}
	return m.meta.update(func(txn kv.Txn) error {
		// Close and the kernel's Forget may free one orphan at once: the
		// one that finds the mark gone has nothing left to do (reading
		// the mark also makes the two transactions conflict).
		if _, ok, err := get(txn, inoKey(kOrphan, ino)); err != nil || !ok {
			return err
		}
		if err := dropXattrs(txn, ino); err != nil {
			return err
		}
		if err := del(txn, inoKey(kInode, ino)); err != nil {
			return err
		}
		if err := addCount(txn, inodeCountKey, -1); err != nil {
			return err
		}
		return del(txn, inoKey(kOrphan, ino))
	})
}
