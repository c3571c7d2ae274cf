package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/dhdfs/dhdfs/nodes"
)

// A drive that fills during a write is skipped, not failed: the write
// goes on with the other drives, at full replication.
func TestDriveFillsDuringWrite(t *testing.T) {
	tp := newTestPool(t, 3, 2)
	tp.fault("d1", nodes.Faults{Capacity: 3 * MinChunkSize})
	data := randBytes(1, 20*MinChunkSize)
	tp.put("/big", data)
	tp.mustEqual("/big", data)
	st := tp.mustStatus()
	if st.UnderReplicated != 0 || st.Copies != 2*st.Chunks {
		t.Fatalf("after filling d1: %+v", st)
	}
	if s := tp.DriveStates()["d1"]; s != StateOnline {
		t.Fatalf("full drive is %s, want online", s)
	}
}

// With every drive full the writer gets ErrNoSpace and nothing written
// before is harmed.
func TestAllDrivesFull(t *testing.T) {
	tp := newTestPool(t, 2, 2)
	small := randBytes(1, 2*MinChunkSize)
	tp.put("/small", small)
	tp.fault("d1", nodes.Faults{Capacity: 4 * MinChunkSize})
	tp.fault("d2", nodes.Faults{Capacity: 4 * MinChunkSize})
	_, err := tp.PutFile(context.Background(), "/big", bytes.NewReader(randBytes(2, 10*MinChunkSize)), 0o644, Caller{})
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("put into full drives: %v, want ErrNoSpace", err)
	}
	tp.mustEqual("/small", small)
	if _, err := tp.Resolve("/big"); err == nil {
		t.Fatal("a failed put left /big behind")
	}
}

// Reads go to the fastest copy: a slow drive serves few of them.
func TestSlowDriveReadLast(t *testing.T) {
	tp := newTestPoolWith(t, 3, 3, MinChunkSize, Options{CacheBytes: -1})
	data := randBytes(3, 64*MinChunkSize)
	tp.put("/f", data)
	tp.fault("d2", nodes.Faults{Latency: 5 * time.Millisecond})
	before := map[string]int64{}
	for name, f := range tp.faulty {
		before[name] = f.Reads()
	}
	tp.mustEqual("/f", data)
	total, slow := int64(0), tp.faulty["d2"].Reads()-before["d2"]
	for name, f := range tp.faulty {
		total += f.Reads() - before[name]
	}
	if slow*4 > total {
		t.Fatalf("the slow drive served %d of %d reads", slow, total)
	}
}

// A hung drive times out instead of hanging the pool: reads come from
// the other copy, writes go elsewhere, and the drive is marked failed.
func TestHungDriveTimesOut(t *testing.T) {
	tp := newTestPoolWith(t, 3, 2, MinChunkSize, Options{CacheBytes: -1, DriveTimeout: 100 * time.Millisecond})
	data := randBytes(4, 8*MinChunkSize)
	tp.put("/f", data)
	tp.fault("d1", nodes.Faults{Hang: true})
	t.Cleanup(func() { tp.fault("d1", nodes.Faults{}) }) // release the hung calls
	done := make(chan struct{})
	go func() {
		defer close(done)
		tp.mustEqual("/f", data)
		more := randBytes(5, 8*MinChunkSize)
		tp.put("/g", more)
		tp.mustEqual("/g", more)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the pool hung with its drive")
	}
	if s := tp.DriveStates()["d1"]; s != StateFailed {
		t.Fatalf("hung drive is %s, want failed", s)
	}
}

// A drive that keeps dropping out and coming back costs no I/O errors.
func TestFlappingDrive(t *testing.T) {
	tp := newTestPoolWith(t, 3, 2, MinChunkSize, Options{CacheBytes: -1, ProbeInterval: 20 * time.Millisecond})
	tp.fault("d1", nodes.Faults{Flap: 30 * time.Millisecond})
	files := map[string][]byte{}
	for i := 0; i < 30; i++ {
		p := fmt.Sprintf("/f%d", i)
		files[p] = randBytes(uint64(10+i), (1+i%4)*MinChunkSize)
		tp.put(p, files[p])
		for q, data := range files {
			tp.mustEqual(q, data)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Steady again: the prober brings it back and healing tops up what
	// was written while it was out.
	tp.fault("d1", nodes.Faults{})
	deadline := time.Now().Add(10 * time.Second)
	for tp.DriveStates()["d1"] != StateOnline {
		if time.Now().After(deadline) {
			t.Fatalf("d1 stayed %s", tp.DriveStates()["d1"])
		}
		time.Sleep(10 * time.Millisecond)
	}
	tp.opts.HealAfter = time.Nanosecond
	if _, err := tp.Heal(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if st := tp.mustStatus(); st.UnderReplicated != 0 {
		t.Fatalf("after heal: %+v", st)
	}
	for q, data := range files {
		tp.mustEqual(q, data)
	}
}
