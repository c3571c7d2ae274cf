package nodes

import (
	"bytes"
	"fmt"
	"slices"
	"sync"
)

// MemStore is an in-memory Store, for tests. Its Usage reports the bytes
// held and a Free that shrinks as chunks are added, from a fixed capacity.
type MemStore struct {
	mu       sync.Mutex
	chunks   map[ChunkID][]byte // guarded by mu
	used     int64              // guarded by mu
	capacity int64
	closed   bool // guarded by mu
}

var _ Store = (*MemStore)(nil)

// NewMemStore returns an empty MemStore that reports capacity bytes total.
func NewMemStore(capacity int64) *MemStore {
	return &MemStore{chunks: map[ChunkID][]byte{}, capacity: capacity}
}

func (m *MemStore) lock() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	return nil
}

// Put implements Store.
func (m *MemStore) Put(id ChunkID, data []byte) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	if _, ok := m.chunks[id]; !ok {
		m.chunks[id] = bytes.Clone(data)
		m.used += int64(len(data))
	}
	return nil
}

// Get implements Store.
func (m *MemStore) Get(id ChunkID, buf []byte) ([]byte, error) {
	if err := m.lock(); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	d, ok := m.chunks[id]
	if !ok {
		return nil, fmt.Errorf("get chunk %s: %w", id.Short(), ErrNotFound)
	}
	return append(buf[:0], d...), nil
}

// GetRange implements Store.
func (m *MemStore) GetRange(id ChunkID, off, n int, buf []byte) ([]byte, error) {
	if err := m.lock(); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	d, ok := m.chunks[id]
	if !ok {
		return nil, fmt.Errorf("get chunk %s: %w", id.Short(), ErrNotFound)
	}
	return append(buf[:0], Range(d, off, n)...), nil
}

// Has implements Store.
func (m *MemStore) Has(id ChunkID) (bool, error) {
	if err := m.lock(); err != nil {
		return false, err
	}
	defer m.mu.Unlock()
	_, ok := m.chunks[id]
	return ok, nil
}

// Delete implements Store.
func (m *MemStore) Delete(id ChunkID) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	if d, ok := m.chunks[id]; ok {
		m.used -= int64(len(d))
		delete(m.chunks, id)
	}
	return nil
}

// Iterate implements Store. fn runs without the lock held, on a snapshot.
func (m *MemStore) Iterate(fn func(id ChunkID, size int64) error) error {
	if err := m.lock(); err != nil {
		return err
	}
	ids := make([]ChunkID, 0, len(m.chunks))
	sizes := make(map[ChunkID]int64, len(m.chunks))
	for id, d := range m.chunks {
		ids = append(ids, id)
		sizes[id] = int64(len(d))
	}
	m.mu.Unlock()
	slices.SortFunc(ids, func(a, b ChunkID) int { return bytes.Compare(a[:], b[:]) })
	for _, id := range ids {
		if err := fn(id, sizes[id]); err != nil {
			return err
		}
	}
	return nil
}

// Sync implements Store.
func (m *MemStore) Sync() error {
	if err := m.lock(); err != nil {
		return err
	}
	m.mu.Unlock()
	return nil
}

// Usage implements Store.
func (m *MemStore) Usage() (Usage, error) {
	if err := m.lock(); err != nil {
		return Usage{}, err
	}
	defer m.mu.Unlock()
	return Usage{Used: m.used, Free: max(m.capacity-m.used, 0), Total: m.capacity}, nil
}

// Close implements Store.
func (m *MemStore) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}

// Corrupt flips a byte of a stored chunk, for tests of checksum fallback.
func (m *MemStore) Corrupt(id ChunkID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.chunks[id]
	if ok && len(d) > 0 {
		d[len(d)/2] ^= 0xff
	}
	return ok
}
