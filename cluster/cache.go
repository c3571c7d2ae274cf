package cluster

import (
	"container/list"
	"sync"

	"github.com/dhdfs/dhdfs/nodes"
)

// chunkCache keeps recently read, verified chunks. Chunks are immutable and
// named by their content, so an entry never goes stale: there is nothing to
// invalidate when files change. The kernel reads in pieces of 128 KiB to
// 1 MiB; the cache makes one chunk cost one drive read, not one per piece.
type chunkCache struct {
	mu       sync.Mutex
	limit    int64
	bytes    int64                           // guarded by mu
	lru      *list.List                      // guarded by mu; front is newest
	entries  map[nodes.ChunkID]*list.Element // guarded by mu
	inflight map[nodes.ChunkID]*fetch        // guarded by mu: reads under way
}

type cacheEntry struct {
	id   nodes.ChunkID
	data []byte
}

// fetch lets concurrent readers of one chunk share a single drive read.
type fetch struct {
	done chan struct{}
	data []byte
	err  error
}

func newChunkCache(limit int64) *chunkCache {
	return &chunkCache{limit: limit, lru: list.New(), entries: map[nodes.ChunkID]*list.Element{}, inflight: map[nodes.ChunkID]*fetch{}}
}

// get returns the chunk's data, calling load at most once at a time per id
// on a miss. The returned slice is shared: callers must not modify it.
func (c *chunkCache) get(id nodes.ChunkID, load func() ([]byte, error)) ([]byte, error) {
	c.mu.Lock()
	if e, ok := c.entries[id]; ok {
		c.lru.MoveToFront(e)
		data := e.Value.(*cacheEntry).data
		c.mu.Unlock()
		return data, nil
	}
	if f, ok := c.inflight[id]; ok {
		c.mu.Unlock()
		<-f.done
		return f.data, f.err
	}
	f := &fetch{done: make(chan struct{})}
	c.inflight[id] = f
	c.mu.Unlock()

	f.data, f.err = load()
	c.mu.Lock()
	delete(c.inflight, id)
	if f.err == nil {
		c.add(id, f.data)
	}
	c.mu.Unlock()
	close(f.done)
	return f.data, f.err
}

func (c *chunkCache) contains(id nodes.ChunkID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.entries[id]
	_, loading := c.inflight[id]
	return ok || loading
}

// put inserts data, which nobody changes any more, as chunk id.
func (c *chunkCache) put(id nodes.ChunkID, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.add(id, data)
}

// add inserts data; c.mu must be held.
func (c *chunkCache) add(id nodes.ChunkID, data []byte) {
	if int64(len(data)) > c.limit { // also: a negative limit caches nothing
		return
	}
	if _, ok := c.entries[id]; ok {
		return
	}
	c.entries[id] = c.lru.PushFront(&cacheEntry{id: id, data: data})
	c.bytes += int64(len(data))
	for c.bytes > c.limit {
		e := c.lru.Back()
		ce := e.Value.(*cacheEntry)
		c.lru.Remove(e)
		delete(c.entries, ce.id)
		c.bytes -= int64(len(ce.data))
	}
}
