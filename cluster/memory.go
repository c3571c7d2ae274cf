package cluster

import "github.com/dhdfs/dhdfs/nodes"

// Defaults of the two memory bounds a user sets (dhdfs mount --cache-size,
// --write-buffer). Together with the stores' own needs they keep a busy
// mount of a few drives within 256 MiB (see MemoryBudget).
const (
	DefaultCacheBytes       = 48 << 20
	DefaultWriteBufferBytes = 96 << 20
)

// metaMemory is what the metadata store's Badger may hold at once: its
// memtables and block cache (see openMeta). The memtable size also sets
// Badger's largest transaction (15% of it), so it stays at 16 MiB; two
// of them let writes go on while one is flushed.
const (
	metaMemtable     = 16 << 20
	metaMemtables    = 2
	metaBlockCache   = 16 << 20
	metaMemory       = metaMemtable*metaMemtables + metaBlockCache
	processBaseBytes = 32 << 20 // FUSE request buffers, goroutines, journals and held chunks, indexes
)

// MemoryBudget returns the memory the pool may use at most when every cache
// and buffer is full: the chunk cache, the write buffers, every store's own
// buffers, and a base for everything else. A mount sets the Go runtime's
// soft memory limit to it (unless GOMEMLIMIT is set): Go's collector then
// runs when the heap nears what the pool needs rather than when it doubles,
// which would otherwise let a burst of writes leave the process holding
// twice its working set. The chunk buffers are pointer-free, so the
// collections this adds scan little.
func (m *Manager) MemoryBudget() int64 {
	m.drivesMu.RLock()
	n := int64(len(m.drives))
	m.drivesMu.RUnlock()
	return max(m.opts.CacheBytes, 0) + m.opts.WriteBufferBytes + metaMemory + n*nodes.StoreMemory + processBaseBytes
}
