package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"

	"github.com/dhdfs/dhdfs/nodes"
)

// recycler records the buffers a cache gives back.
type recycler struct {
	mu   sync.Mutex
	back map[*byte]int
}

func (r *recycler) put(b []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.back[&b[:1][0]]++
}

func (r *recycler) count(b []byte) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.back[&b[:1][0]]
}

func cacheID(i byte) nodes.ChunkID { return nodes.ChunkID{i} }

// A loaded buffer goes back only when the cache has let go of it and
// every reader has unpinned it, exactly once; bytes put into the cache
// (another owner's) never go back.
func TestChunkCacheRecyclesOnlyUnusedBuffers(t *testing.T) {
	r := &recycler{back: map[*byte]int{}}
	c := newChunkCache(2<<10, r.put)
	buf := func() []byte { return make([]byte, 1<<10) }
	a := buf()
	load := func(b []byte) func() ([]byte, bool, error) {
		return func() ([]byte, bool, error) { return b, true, nil }
	}
	got, pinA, err := c.get(cacheID(1), load(a))
	if err != nil || &got[0] != &a[0] {
		t.Fatal("get did not return the loaded buffer", err)
	}
	_, pinA2, _ := c.get(cacheID(1), load(buf())) // a hit: a second reader
	pinA.unpin()
	// Two more chunks push the first out of the cache while a reader
	// still holds it.
	for i := byte(2); i <= 3; i++ {
		_, p, _ := c.get(cacheID(i), load(buf()))
		p.unpin()
	}
	if c.contains(cacheID(1)) {
		t.Fatal("chunk 1 still cached")
	}
	if r.count(a) != 0 {
		t.Fatal("a buffer went back while a reader held it")
	}
	pinA2.unpin()
	if r.count(a) != 1 {
		t.Fatalf("buffer went back %d times, want 1", r.count(a))
	}
	own := buf()
	c.put(cacheID(4), own)
	c.put(cacheID(5), buf())
	c.put(cacheID(6), buf())
	if r.count(own) != 0 {
		t.Fatal("bytes put into the cache went to the pool")
	}
}

// Readers waiting for a load in flight are pinned before the load ends:
// eviction in between does not recycle the buffer under them.
func TestChunkCacheWaitersPinned(t *testing.T) {
	r := &recycler{back: map[*byte]int{}}
	c := newChunkCache(1<<10, r.put)
	a := make([]byte, 1<<10)
	release := make(chan struct{})
	started := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	var first *cacheEntry
	go func() {
		defer wg.Done()
		_, first, _ = c.get(cacheID(1), func() ([]byte, bool, error) {
			close(started)
			<-release
			return a, true, nil
		})
	}()
	<-started
	const waiters = 4
	pins := make(chan *cacheEntry, waiters)
	for i := 0; i < waiters; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, p, err := c.get(cacheID(1), func() ([]byte, bool, error) { return nil, false, errors.New("loaded twice") })
			if err != nil {
				t.Error(err)
			}
			pins <- p
		}()
	}
	for !waiting(c, cacheID(1), waiters+1) {
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	close(pins)
	// Evict it: another chunk fills the cache.
	_, p, _ := c.get(cacheID(2), func() ([]byte, bool, error) { return make([]byte, 1<<10), true, nil })
	p.unpin()
	first.unpin()
	for p := range pins {
		if r.count(a) != 0 {
			t.Fatal("buffer recycled while a waiter held it")
		}
		p.unpin()
	}
	if r.count(a) != 1 {
		t.Fatalf("buffer went back %d times, want 1", r.count(a))
	}
}

// waiting reports whether n readers wait for chunk id's load.
func waiting(c *chunkCache, id nodes.ChunkID, n int32) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.inflight[id]
	return ok && f.users == n
}

// A failed load pins nothing and recycles nothing.
func TestChunkCacheFailedLoad(t *testing.T) {
	r := &recycler{back: map[*byte]int{}}
	c := newChunkCache(1<<20, r.put)
	if _, p, err := c.get(cacheID(1), func() ([]byte, bool, error) { return nil, false, errors.New("drive gone") }); err == nil || p != nil {
		t.Fatal("a failed load returned an entry")
	}
	if c.contains(cacheID(1)) {
		t.Fatal("a failed load was cached")
	}
}

// Readers that keep shared bytes a while (as a reply waits for the
// kernel) while others read other chunks through a cache of two chunks,
// which evicts and recycles all the time: every reader's bytes stay
// what it read until it calls done.
func TestSharedReadsSurviveRecycling(t *testing.T) {
	tp := newTestPoolWith(t, 3, 2, MinChunkSize, Options{CacheBytes: 2 * MinChunkSize})
	ctx := context.Background()
	const files, chunks = 4, 6
	want := make([][]byte, files)
	var open []*File
	for i := range want {
		want[i] = randBytes(uint64(10+i), chunks*MinChunkSize)
		name := fmt.Sprintf("/f%d", i)
		tp.put(name, want[i])
		a, err := tp.Resolve(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := tp.OpenFile(a.Ino)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close(ctx)
		open = append(open, f)
	}
	var wg sync.WaitGroup
	for r := 0; r < 6; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 7))
			for i := 0; i < 200; i++ {
				fi := rng.IntN(files)
				off := int64(rng.IntN(chunks)) * MinChunkSize
				p := make([]byte, MinChunkSize)
				vec, n, done, err := open[fi].ReadShared(ctx, p, off)
				if err != nil || n != len(p) {
					done()
					t.Errorf("read: %d, %v", n, err)
					return
				}
				runtime.Gosched() // others evict and reload meanwhile
				var got []byte
				for _, v := range vec {
					got = append(got, v...)
				}
				done()
				if !bytes.Equal(got, want[fi][off:off+int64(n)]) {
					t.Errorf("file %d at %d: bytes changed under a reader", fi, off)
					return
				}
			}
		}()
	}
	wg.Wait()
}
