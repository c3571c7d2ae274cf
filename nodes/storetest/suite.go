// Package storetest is the conformance suite every nodes.Store
// implementation must pass.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/dhdfs/dhdfs/nodes"
)

// Run runs the suite against stores made by open. open returns a fresh,
// empty store; Run closes it.
func Run(t *testing.T, open func(t *testing.T) nodes.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s nodes.Store)
	}{
		{"PutGet", testPutGet},
		{"GetRange", testGetRange},
		{"GetMissing", testGetMissing},
		{"PutTwice", testPutTwice},
		{"Delete", testDelete},
		{"Iterate", testIterate},
		{"IterateStops", testIterateStops},
		{"EmptyChunk", testEmptyChunk},
		{"Concurrent", testConcurrent},
		{"Usage", testUsage},
		{"Closed", testClosed},
		{"Reclaim", testReclaim},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			defer s.Close()
			tc.fn(t, s)
		})
	}
}

func chunk(seed uint64, n int) (nodes.ChunkID, []byte) {
	r := rand.New(rand.NewPCG(seed, 42))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return nodes.SumChunk(b), b
}

func testPutGet(t *testing.T, s nodes.Store) {
	for i, n := range []int{1, 1000, 1 << 20} {
		id, data := chunk(uint64(i), n)
		if err := s.Put(id, data); err != nil {
			t.Fatalf("Put(%d bytes): %v", n, err)
		}
		got, err := s.Get(id, nil)
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("Get returned %d bytes, differing from the %d put", len(got), n)
		}
		// Get must not alias the caller's later buffer reuse.
		buf := make([]byte, 0, n)
		got2, err := s.Get(id, buf)
		if err != nil || !bytes.Equal(got2, data) {
			t.Fatalf("Get into buffer: %v", err)
		}
		if ok, err := s.Has(id); err != nil || !ok {
			t.Fatalf("Has = %v, %v; want true", ok, err)
		}
	}
}

func testGetMissing(t *testing.T, s nodes.Store) {
	id, _ := chunk(7, 10)
	if _, err := s.Get(id, nil); !errors.Is(err, nodes.ErrNotFound) {
		t.Fatalf("Get of absent chunk: err = %v, want ErrNotFound", err)
	}
	if ok, err := s.Has(id); err != nil || ok {
		t.Fatalf("Has of absent chunk = %v, %v", ok, err)
	}
}

func testPutTwice(t *testing.T, s nodes.Store) {
	id, data := chunk(1, 4096)
	for i := 0; i < 2; i++ {
		if err := s.Put(id, data); err != nil {
			t.Fatalf("Put #%d: %v", i, err)
		}
	}
	n := 0
	if err := s.Iterate(func(nodes.ChunkID, int64) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("after two Puts of one id Iterate saw %d chunks", n)
	}
}

func testDelete(t *testing.T, s nodes.Store) {
	id, data := chunk(2, 4096)
	if err := s.Put(id, data); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(id); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Get(id, nil); !errors.Is(err, nodes.ErrNotFound) {
		t.Fatalf("Get after Delete: %v", err)
	}
	if err := s.Delete(id); err != nil {
		t.Fatalf("Delete of absent chunk: %v", err)
	}
}

func testIterate(t *testing.T, s nodes.Store) {
	want := map[nodes.ChunkID]int64{}
	for i := 0; i < 50; i++ {
		id, data := chunk(uint64(100+i), 100+i*37)
		if err := s.Put(id, data); err != nil {
			t.Fatal(err)
		}
		want[id] = int64(len(data))
	}
	var prev []byte
	got := map[nodes.ChunkID]int64{}
	err := s.Iterate(func(id nodes.ChunkID, size int64) error {
		if prev != nil && bytes.Compare(prev, id[:]) >= 0 {
			return fmt.Errorf("ids out of order: %x after %x", id[:4], prev[:4])
		}
		prev = bytes.Clone(id[:])
		got[id] = size
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("Iterate saw %d chunks, want %d", len(got), len(want))
	}
	for id := range want {
		if _, ok := got[id]; !ok {
			t.Fatalf("Iterate missed %s", id.Short())
		}
	}
}

func testIterateStops(t *testing.T, s nodes.Store) {
	for i := 0; i < 5; i++ {
		id, data := chunk(uint64(200+i), 64)
		if err := s.Put(id, data); err != nil {
			t.Fatal(err)
		}
	}
	stop := errors.New("stop")
	n := 0
	err := s.Iterate(func(nodes.ChunkID, int64) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("Iterate returned %v after %d calls; want stop after 1", err, n)
	}
}

func testEmptyChunk(t *testing.T, s nodes.Store) {
	id := nodes.SumChunk(nil)
	if err := s.Put(id, nil); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(id, nil)
	if err != nil || len(got) != 0 {
		t.Fatalf("Get of empty chunk = %d bytes, %v", len(got), err)
	}
}

func testConcurrent(t *testing.T, s nodes.Store) {
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				id, data := chunk(uint64(1000+w*100+i), 8192)
				if err := s.Put(id, data); err != nil {
					errs <- err
					return
				}
				got, err := s.Get(id, nil)
				if err != nil || !bytes.Equal(got, data) {
					errs <- fmt.Errorf("get after put: %v", err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
}

func testUsage(t *testing.T, s nodes.Store) {
	u, err := s.Usage()
	if err != nil {
		t.Fatal(err)
	}
	if u.Total <= 0 || u.Free < 0 || u.Free > u.Total || u.Used < 0 {
		t.Fatalf("implausible usage %+v", u)
	}
}

func testClosed(t *testing.T, s nodes.Store) {
	id, data := chunk(3, 10)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.Put(id, data); !errors.Is(err, nodes.ErrClosed) {
		t.Fatalf("Put after Close: %v, want ErrClosed", err)
	}
	if _, err := s.Get(id, nil); !errors.Is(err, nodes.ErrClosed) {
		t.Fatalf("Get after Close: %v, want ErrClosed", err)
	}
}

func testGetRange(t *testing.T, s nodes.Store) {
	id, data := chunk(9, 100000)
	if err := s.Put(id, data); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ off, n, wantOff, wantN int }{
		{0, 10, 0, 10},
		{65536, 4096, 65536, 4096},
		{99990, 100, 99990, 10}, // cut at the end
		{100000, 10, 0, 0},      // past the end
		{0, 1 << 20, 0, 100000},
	}
	for _, tc := range tests {
		got, err := s.GetRange(id, tc.off, tc.n, nil)
		if err != nil {
			t.Fatalf("GetRange(%d, %d): %v", tc.off, tc.n, err)
		}
		if !bytes.Equal(got, data[tc.wantOff:tc.wantOff+tc.wantN]) {
			t.Fatalf("GetRange(%d, %d) returned %d bytes, want %d", tc.off, tc.n, len(got), tc.wantN)
		}
	}
	missing, _ := chunk(10, 5)
	if _, err := s.GetRange(missing, 0, 5, nil); !errors.Is(err, nodes.ErrNotFound) {
		t.Fatalf("GetRange of absent chunk: %v", err)
	}
}

// testReclaim checks a Reclaimer's contract: Space counts the chunks
// stored, and Reclaim keeps every stored chunk and lets calls made
// meanwhile succeed. (Whether space really comes back depends on the
// store's unit; the implementations test that themselves.)
func testReclaim(t *testing.T, s nodes.Store) {
	r, ok := s.(nodes.Reclaimer)
	if !ok {
		t.Skip("not a Reclaimer")
	}
	const n, size = 40, 64 << 10
	var keep []nodes.ChunkID
	var want, deleted int64
	deleted0 := r.Deleted()
	for i := 0; i < n; i++ {
		id, data := chunk(uint64(5000+i), size)
		if err := s.Put(id, data); err != nil {
			t.Fatal(err)
		}
		if i%4 == 0 {
			keep = append(keep, id)
			want += size
		} else if err := s.Delete(id); err != nil {
			t.Fatal(err)
		} else {
			deleted += size
		}
	}
	sp, err := r.Space()
	if err != nil {
		t.Fatal(err)
	}
	// Live is an estimate: within a few bytes per chunk.
	near := func(live int64) bool { return live >= want-want/100 && live <= want+want/100 }
	if !near(sp.Live) || sp.Used < 0 || sp.Unit <= 0 || sp.Dead() != max(0, sp.Used-sp.Live) {
		t.Fatalf("Space = %+v, want Live about %d", sp, want)
	}
	if d := sp.Deleted - deleted0; d < deleted-deleted/100 || d > deleted+deleted/100 || r.Deleted() != sp.Deleted {
		t.Fatalf("Space.Deleted went from %d to %d (Deleted() %d) after deleting %d bytes", deleted0, sp.Deleted, r.Deleted(), deleted)
	}
	done := make(chan error, 1)
	go func() {
		for i := 0; i < 20; i++ {
			id, data := chunk(uint64(6000+i), size)
			if err := s.Put(id, data); err != nil {
				done <- err
				return
			}
			if got, err := s.Get(id, nil); err != nil || !bytes.Equal(got, data) {
				done <- fmt.Errorf("get during Reclaim: %v", err)
				return
			}
			if err := s.Delete(id); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	if _, err := r.Reclaim(context.Background(), nodes.ReclaimOptions{MinDead: 0.5}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("a call during Reclaim: %v", err)
	}
	for i, id := range keep {
		_, data := chunk(uint64(5000+4*i), size)
		got, err := s.Get(id, nil)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("kept chunk %d after Reclaim: %v", i, err)
		}
	}
	if sp, err := r.Space(); err != nil || !near(sp.Live) {
		t.Fatalf("Space after Reclaim = %+v, %v; want Live about %d", sp, err, want)
	}
}
