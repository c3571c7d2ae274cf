package dirdrive_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dhdfs/dhdfs/nodes"
	"github.com/dhdfs/dhdfs/nodes/dirdrive"
)

// testChunk returns a chunk of n bytes that differs for every seed.
func testChunk(seed, n int) (nodes.ChunkID, []byte) {
	b := bytes.Repeat([]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), 0x5a}, n/4)
	return nodes.SumChunk(b), b
}

// Overwrites leave a store many times the size of its live chunks;
// Reclaim gives the dead space back without closing the store, while
// other goroutines keep putting, reading and deleting, and none of their
// calls fails.
func TestBadgerReclaim(t *testing.T) {
	const unit = 4 << 20
	s, err := dirdrive.OpenBadger(t.TempDir(), nodes.Options{ValueLogFileSize: unit})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const size, live = 256 << 10, 32 // 8 MiB live
	var ids []nodes.ChunkID
	for i := 0; i < 400; i++ { // 100 MiB written
		id, data := testChunk(i, size)
		if err := s.Put(id, data); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		if len(ids) > live {
			if err := s.Delete(ids[0]); err != nil {
				t.Fatal(err)
			}
			ids = ids[1:]
		}
	}
	before, err := s.Space()
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(live * size); before.Live < want || before.Live > want+want/100 {
		t.Fatalf("Space.Live = %d, want about %d", before.Live, want)
	}
	if before.Unit != unit {
		t.Fatalf("Space.Unit = %d, want %d", before.Unit, unit)
	}

	// Foreground traffic while Reclaim runs.
	var stop atomic.Bool
	var wg sync.WaitGroup
	var ops atomic.Int64
	var slowest atomic.Int64
	errs := make(chan error, 3)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1000; !stop.Load(); i++ {
			id, data := testChunk(i, size)
			start := time.Now()
			if err := s.Put(id, data); err != nil {
				errs <- err
				return
			}
			if d := int64(time.Since(start)); d > slowest.Load() {
				slowest.Store(d)
			}
			if err := s.Delete(id); err != nil {
				errs <- err
				return
			}
			ops.Add(1)
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			id := ids[i%len(ids)]
			if _, err := s.Get(id, nil); err != nil {
				errs <- err
				return
			}
		}
	}()
	res, err := s.Reclaim(context.Background(), nodes.ReclaimOptions{})
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("a call during Reclaim failed: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	after, err := s.Space()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("used %d KiB before, %d KiB after (live %d KiB); %d rounds, freed %d KiB; %d puts meanwhile, slowest %v",
		before.Used>>10, after.Used>>10, after.Live>>10, res.Rounds, res.Freed>>10, ops.Load(), time.Duration(slowest.Load()))
	// What may stay: files less than half dead hold at most twice their
	// live bytes, the file being written up to a unit (and a chunk), and
	// Badger's tables and logs a few MiB; and what the writer put while
	// Reclaim ran, which went dead after it started (the next call's).
	meanwhile := ops.Load() * size
	if limit := 2*after.Live + unit + size + 8<<20 + meanwhile; after.Used > limit {
		t.Fatalf("Reclaim left %d bytes for %d live and %d written meanwhile, want at most %d", after.Used, after.Live, meanwhile, limit)
	}
	// The next call, with nothing written meanwhile, gives that back too.
	if _, err := s.Reclaim(context.Background(), nodes.ReclaimOptions{}); err != nil {
		t.Fatal(err)
	}
	if again, err := s.Space(); err != nil || again.Used > 2*again.Live+unit+size+8<<20 {
		t.Fatalf("a second Reclaim left %d bytes for %d live (%v)", again.Used, again.Live, err)
	}
	// Freed may be negative: the writer may have grown the store more.
	if res.Rounds == 0 {
		t.Fatalf("Reclaim reported %+v", res)
	}
	for _, id := range ids {
		if _, err := s.Get(id, nil); err != nil {
			t.Fatalf("a live chunk is gone after Reclaim: %v", err)
		}
	}
}

// Between paces the rounds and can stop them; so can the context.
func TestBadgerReclaimStops(t *testing.T) {
	s, err := dirdrive.OpenBadger(t.TempDir(), nodes.Options{ValueLogFileSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 0; i < 64; i++ { // 16 MiB, all deleted
		id, data := testChunk(i, 256<<10)
		if err := s.Put(id, data); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(id); err != nil {
			t.Fatal(err)
		}
	}
	enough := errors.New("enough")
	calls := 0
	res, err := s.Reclaim(context.Background(), nodes.ReclaimOptions{MinDead: 0.9, Between: func(_ context.Context, sofar nodes.ReclaimResult) error {
		calls++
		if sofar.Rounds != calls {
			t.Errorf("Between saw %d rounds at call %d", sofar.Rounds, calls)
		}
		if calls == 2 {
			return enough
		}
		return nil
	}})
	if !errors.Is(err, enough) || res.Rounds != 2 {
		t.Fatalf("Reclaim stopped by Between: %+v, %v", res, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Reclaim(ctx, nodes.ReclaimOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Reclaim with a cancelled context: %v", err)
	}
	if _, err := s.Reclaim(context.Background(), nodes.ReclaimOptions{MinDead: 1}); err == nil {
		t.Fatal("Reclaim accepted a dead share of 1")
	}
	// The rest goes when asked again.
	res, err = s.Reclaim(context.Background(), nodes.ReclaimOptions{})
	if err != nil || res.Rounds == 0 {
		t.Fatalf("Reclaim after stopping: %+v, %v", res, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reclaim(context.Background(), nodes.ReclaimOptions{}); !errors.Is(err, nodes.ErrClosed) {
		t.Fatalf("Reclaim after Close: %v", err)
	}
}

// Pace is called before each chunk a round copies, and an error from it
// stops Reclaim with the live chunks intact.
func TestBadgerReclaimPace(t *testing.T) {
	s, err := dirdrive.OpenBadger(t.TempDir(), nodes.Options{ValueLogFileSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var live []nodes.ChunkID
	for i := 0; i < 64; i++ { // 16 MiB, three quarters deleted
		id, data := testChunk(i, 256<<10)
		if err := s.Put(id, data); err != nil {
			t.Fatal(err)
		}
		if i%4 == 0 {
			live = append(live, id)
			continue
		}
		if err := s.Delete(id); err != nil {
			t.Fatal(err)
		}
	}
	check := func() {
		t.Helper()
		for _, id := range live {
			if _, err := s.Get(id, nil); err != nil {
				t.Fatalf("live chunk %s: %v", id.Short(), err)
			}
		}
	}
	enough := errors.New("enough")
	calls := 0
	_, err = s.Reclaim(context.Background(), nodes.ReclaimOptions{Pace: func(context.Context) error {
		if calls++; calls == 3 {
			return enough
		}
		return nil
	}})
	if !errors.Is(err, enough) {
		t.Fatalf("Reclaim stopped by Pace: %v (after %d calls)", err, calls)
	}
	check()
	calls = 0
	res, err := s.Reclaim(context.Background(), nodes.ReclaimOptions{Pace: func(context.Context) error { calls++; return nil }})
	if err != nil || res.Rounds == 0 {
		t.Fatalf("Reclaim: %+v, %v", res, err)
	}
	if calls < res.Rounds {
		t.Fatalf("Pace called %d times in %d rounds", calls, res.Rounds)
	}
	check()
}

// Reclaim never rewrites the file being written; Rotate closes it first,
// so that what was deleted there comes back too.
func TestBadgerReclaimRotate(t *testing.T) {
	s, err := dirdrive.OpenBadger(t.TempDir(), nodes.Options{ValueLogFileSize: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 0; i < 40; i++ { // 10 MiB, all in the first file, all deleted
		id, data := testChunk(i, 256<<10)
		if err := s.Put(id, data); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(id); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := s.Space()
	res, err := s.Reclaim(context.Background(), nodes.ReclaimOptions{})
	if err != nil || res.Rounds != 0 {
		t.Fatalf("Reclaim of the file being written: %+v, %v", res, err)
	}
	res, err = s.Reclaim(context.Background(), nodes.ReclaimOptions{Rotate: true})
	after, _ := s.Space()
	t.Logf("used %d KiB, after rotating %d KiB; %+v", before.Used>>10, after.Used>>10, res)
	if err != nil || res.Rounds != 1 || after.Used > before.Used/4 {
		t.Fatalf("Reclaim with Rotate: %+v, %v; used %d of %d", res, err, after.Used, before.Used)
	}
}
