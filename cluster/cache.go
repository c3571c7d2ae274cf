package cluster

import (
	"container/list"
	"sync"
	"sync/atomic"

	"github.com/dhdfs/dhdfs/nodes"
)

// chunkCache keeps recently read, verified chunks. Chunks are immutable and
// named by their content, so an entry never goes stale: there is nothing to
// invalidate when files change. The kernel reads in pieces of 128 KiB to
// 1 MiB; the cache makes one chunk cost one drive read, not one per piece.
//
// The buffers of chunks read from drives are recycled (loaded with a
// buffer from recycle's pool): a new 1 MiB buffer per chunk read, zeroed
// by Go before the read overwrote it, was 15% of the mount's CPU during
// sequential reads. A buffer may go back only when nobody reads it any
// more, and readers keep cached bytes past the call that found them (a
// read's reply to the kernel is written from them), so every entry counts
// its users: the cache itself while the entry is cached, and every caller
// of get until it unpins the entry it got.
type chunkCache struct {
	mu       sync.Mutex
	limit    int64
	recycle  func([]byte)                    // takes back a loaded buffer nobody uses; nil: none are recycled
	bytes    int64                           // guarded by mu
	lru      *list.List                      // guarded by mu; front is newest
	entries  map[nodes.ChunkID]*list.Element // guarded by mu
	inflight map[nodes.ChunkID]*fetch        // guarded by mu: reads under way
}

// cacheEntry is a chunk's bytes and the users pinning them.
type cacheEntry struct {
	id   nodes.ChunkID
	data []byte
	// pooled: data is a buffer load took from recycle's pool, to go back
	// when the last user unpins it. Bytes put into the cache (shared with
	// other owners) are not.
	pooled bool
	refs   atomic.Int32
	cache  *chunkCache
}

// unpin gives up one use of e's bytes, which the caller must not touch
// afterwards. A nil entry (bytes not from the cache) is a no-op.
func (e *cacheEntry) unpin() {
	if e == nil {
		return
	}
	if e.refs.Add(-1) == 0 && e.pooled && e.cache.recycle != nil {
		e.cache.recycle(e.data)
	}
}

// size is what the entry holds in memory.
func (e *cacheEntry) size() int64 { return int64(cap(e.data)) }

// fetch lets concurrent readers of one chunk share a single drive read.
type fetch struct {
	done  chan struct{}
	entry *cacheEntry
	err   error
	users int32 // guarded by the cache's mu until done: the waiters, each pinned
}

func newChunkCache(limit int64, recycle func([]byte)) *chunkCache {
	return &chunkCache{limit: limit, recycle: recycle, lru: list.New(), entries: map[nodes.ChunkID]*list.Element{}, inflight: map[nodes.ChunkID]*fetch{}}
}

// get returns the chunk's bytes, pinned: the caller unpins the entry once
// it no longer uses them, and must not modify them. On a miss it calls
// load, at most once at a time per id; pooled says load's buffer came
// from recycle's pool and may go back there.
func (c *chunkCache) get(id nodes.ChunkID, load func() (data []byte, pooled bool, err error)) ([]byte, *cacheEntry, error) {
	c.mu.Lock()
	if el, ok := c.entries[id]; ok {
		c.lru.MoveToFront(el)
		e := el.Value.(*cacheEntry)
		e.refs.Add(1)
		c.mu.Unlock()
		return e.data, e, nil
	}
	if f, ok := c.inflight[id]; ok {
		f.users++ // pinned for this waiter when the entry is made
		c.mu.Unlock()
		<-f.done
		if f.err != nil {
			return nil, nil, f.err
		}
		return f.entry.data, f.entry, nil
	}
	f := &fetch{done: make(chan struct{}), users: 1}
	c.inflight[id] = f
	c.mu.Unlock()

	data, pooled, err := load()
	c.mu.Lock()
	delete(c.inflight, id)
	if err == nil {
		e := &cacheEntry{id: id, data: data, pooled: pooled, cache: c}
		e.refs.Store(f.users)
		c.add(e)
		f.entry = e
	}
	f.err = err
	c.mu.Unlock()
	close(f.done)
	if err != nil {
		return nil, nil, err
	}
	return data, f.entry, nil
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
	c.add(&cacheEntry{id: id, data: data, cache: c})
}

// add inserts e, pinned for the cache, unless it is too big or the chunk
// is cached already; c.mu must be held.
func (c *chunkCache) add(e *cacheEntry) {
	if e.size() > c.limit { // also: a negative limit caches nothing
		return
	}
	if _, ok := c.entries[e.id]; ok {
		return
	}
	e.refs.Add(1)
	c.entries[e.id] = c.lru.PushFront(e)
	c.bytes += e.size()
	for c.bytes > c.limit {
		el := c.lru.Back()
		old := el.Value.(*cacheEntry)
		c.lru.Remove(el)
		delete(c.entries, old.id)
		c.bytes -= old.size()
		old.unpin()
	}
}
