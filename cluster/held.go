package cluster

import (
	"fmt"
	"sync"

	"github.com/dhdfs/dhdfs/nodes"
)

// Small chunks written for an fsync are held in memory instead of being
// put into their drives' stores at once. The sync round that the fsync
// waits for writes them into the drives' journals anyway (journal.go), in
// the same record as the metadata that names them, so the journal alone
// makes them durable; a Put into a Badger store cost one store
// transaction per copy on the fsync's path (65 µs of a 480 µs fsync of a
// 200-byte append, measured). They reach the stores when a store is
// synced (every checkpoint, or a round that syncs the store instead of
// journaling), before any journal generation holding them is dropped.
// Most never do: an appender's or a database's small pieces are folded
// into bigger ones within seconds, and a held chunk that is deleted costs
// no store transaction either.
//
// Only an fsync's own chunks are held, and only new ones: a crash before
// the round leaves the metadata naming a chunk no drive holds, which the
// next open reverts as it does an unsynced layer after a power cut
// (revertUnsettled), and the fsync had not returned; when a drive over
// heldMax put its copy into its store, that copy survives, and the open
// copies it onto the holders that lost theirs (refill). A chunk an fsync
// does not follow (close, the CLI's writer, healing) is put into the
// store, which survives a killed process.

// heldMax bounds the bytes a drive holds; past it chunks go to the store.
// It is what a round journals per drive at most (journalDriveMax): the
// same bytes, kept past their round until a checkpoint.
const heldMax = journalDriveMax

// heldStore is a drive's store with the chunks held for it. Every read,
// delete and whole-store operation sees the held chunks as stored; Sync,
// Iterate and Close put them into the store first.
type heldStore struct {
	nodes.Store
	mu    sync.Mutex
	held  map[nodes.ChunkID][]byte // guarded by mu
	bytes int64                    // guarded by mu
}

func holdFor(s nodes.Store) *heldStore {
	return &heldStore{Store: s, held: map[nodes.ChunkID][]byte{}}
}

// hold keeps data, which nobody changes any more, as chunk id. It reports
// false when the drive holds too much already: then the caller puts it.
func (h *heldStore) hold(id nodes.ChunkID, data []byte) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if old, ok := h.held[id]; ok {
		h.bytes -= int64(len(old))
	}
	if h.bytes+int64(len(data)) > heldMax {
		delete(h.held, id)
		return false
	}
	h.held[id] = data
	h.bytes += int64(len(data))
	return true
}

// lookup returns chunk id if it is held.
func (h *heldStore) lookup(id nodes.ChunkID) ([]byte, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	b, ok := h.held[id]
	return b, ok
}

// heldBytes reports the bytes held.
func (h *heldStore) heldBytes() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.bytes
}

// store puts held chunk id into the store, under mu so that no Delete or
// Put of id runs in between.
func (h *heldStore) store(id nodes.ChunkID) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	b, ok := h.held[id]
	if !ok {
		return nil
	}
	if err := h.Store.Put(id, b); err != nil {
		return fmt.Errorf("put held chunk %s: %w", id.Short(), err)
	}
	delete(h.held, id)
	h.bytes -= int64(len(b))
	return nil
}

// flush puts every held chunk into the store, one at a time, so readers
// wait for at most one Put.
func (h *heldStore) flush() error {
	h.mu.Lock()
	ids := make([]nodes.ChunkID, 0, len(h.held))
	for id := range h.held {
		ids = append(ids, id)
	}
	h.mu.Unlock()
	for _, id := range ids {
		if err := h.store(id); err != nil {
			return err
		}
	}
	return nil
}

// Put stores data, replacing a held copy. The store is written without
// mu held: chunks of a big write go to one drive in parallel.
func (h *heldStore) Put(id nodes.ChunkID, data []byte) error {
	if err := h.Store.Put(id, data); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if b, ok := h.held[id]; ok {
		delete(h.held, id)
		h.bytes -= int64(len(b))
	}
	return nil
}

func (h *heldStore) Get(id nodes.ChunkID, buf []byte) ([]byte, error) {
	if b, ok := h.lookup(id); ok {
		return append(buf[:0], b...), nil
	}
	return h.Store.Get(id, buf)
}

// GetInto is Get through the store's own GetInto (nodes.GetInto).
func (h *heldStore) GetInto(id nodes.ChunkID, buf []byte) ([]byte, error) {
	if b, ok := h.lookup(id); ok {
		return append(buf[:0], b...), nil
	}
	return nodes.GetInto(h.Store, id, buf)
}

func (h *heldStore) GetRange(id nodes.ChunkID, off, n int, buf []byte) ([]byte, error) {
	if b, ok := h.lookup(id); ok {
		return append(buf[:0], nodes.Range(b, off, n)...), nil
	}
	return h.Store.GetRange(id, off, n, buf)
}

// Has reports a held chunk as stored, and puts it into the store first:
// callers ask to rely on the copy (deduplication), which a held copy only
// deserves once a killed process cannot lose it.
func (h *heldStore) Has(id nodes.ChunkID) (bool, error) {
	if _, ok := h.lookup(id); ok {
		return true, h.store(id)
	}
	return h.Store.Has(id)
}

// Delete drops a held chunk without asking the store: held chunks are new,
// so the store has no copy of its own.
func (h *heldStore) Delete(id nodes.ChunkID) error {
	h.mu.Lock()
	b, ok := h.held[id]
	if ok {
		delete(h.held, id)
		h.bytes -= int64(len(b))
	}
	h.mu.Unlock()
	if ok {
		return nil
	}
	return h.Store.Delete(id)
}

func (h *heldStore) Iterate(fn func(id nodes.ChunkID, size int64) error) error {
	if err := h.flush(); err != nil {
		return err
	}
	return h.Store.Iterate(fn)
}

func (h *heldStore) Sync() error {
	if err := h.flush(); err != nil {
		return err
	}
	return h.Store.Sync()
}

func (h *heldStore) Close() error {
	ferr := h.flush()
	if err := h.Store.Close(); err != nil {
		return err
	}
	return ferr
}

// CollectGarbage passes through to the store.
func (h *heldStore) CollectGarbage() error {
	if gc, ok := h.Store.(nodes.GarbageCollector); ok {
		return gc.CollectGarbage()
	}
	return nil
}

// flushHeld puts every drive's held chunks into its store, without a
// sync: a checkpoint does it before it stops sync rounds, so that its
// own flush under roundMu finds little left and fsyncs do not wait for
// thousands of Puts.
func (m *Manager) flushHeld() {
	for _, d := range m.driveList() {
		if h, ok := d.usable().(*heldStore); ok {
			if err := h.flush(); err != nil {
				m.log.Debug("put held chunks", "drive", d.record().Name, "err", err)
			}
		}
	}
}
