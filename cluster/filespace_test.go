package cluster

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/dhdfs/dhdfs/nodes"
)

// fallocate of more than the pool holds fails with ENOSPC, however large.
func TestAllocateHugeIsNoSpace(t *testing.T) {
	tp := newTestPool(t, 2, 2)
	ctx := context.Background()
	n, err := tp.Mknod(RootIno, "f", 0o644, Caller{}, "")
	if err != nil {
		t.Fatal(err)
	}
	f, err := tp.OpenFile(n.Ino)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close(ctx)
	if err := f.Allocate(ctx, 0, 1<<40, false); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("1 TiB: %v", err)
	}
	if err := f.Allocate(ctx, 0, 1<<62, false); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("4 EiB with 2 copies: %v (size now %d)", err, f.Size())
	}
}

// Zeroing the whole content of a chunk leaves a hole, not an empty chunk.
func TestZeroRangeLeavesHoles(t *testing.T) {
	tp := newTestPool(t, 1, 1)
	ctx := context.Background()
	n, _ := tp.Mknod(RootIno, "f", 0o644, Caller{}, "")
	f, _ := tp.OpenFile(n.Ino)
	f.WriteAt(ctx, []byte("0123456789"), 0)
	if err := f.Truncate(ctx, 3*MinChunkSize); err != nil {
		t.Fatal(err)
	}
	if err := f.ZeroRange(ctx, 0, 100, true); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(ctx); err != nil {
		t.Fatal(err)
	}
	slots, _ := tp.fileSlots(n.Ino)
	if len(slots) != 0 {
		t.Errorf("an all-zero file keeps %d chunk slots: %+v", len(slots), slots)
	}
	f, _ = tp.OpenFile(n.Ino)
	defer f.Close(ctx)
	if pos, err := f.Seek(ctx, 0, SeekData); !errors.Is(err, io.EOF) {
		t.Errorf("SEEK_DATA(0) of an all-zero file: %d, %v; want io.EOF (ENXIO)", pos, err)
	}
}

// A Put that times out goes on in the background with the caller's
// bytes: the write buffer must not be recycled (and poisoned) under it,
// or the late copy would hold other bytes under the chunk's id.
func TestTimedOutPutKeepsItsBuffer(t *testing.T) {
	tp := newTestPoolWith(t, 2, 2, MinChunkSize, Options{DriveTimeout: 100 * time.Millisecond, PoisonBuffers: true})
	ctx := context.Background()
	n, err := tp.Mknod(RootIno, "f", 0o644, Caller{}, "")
	if err != nil {
		t.Fatal(err)
	}
	f, err := tp.OpenFile(n.Ino)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close(ctx)
	hung := tp.faulty["d1"]
	hung.Set(nodes.Faults{Hang: true})
	data := randBytes(7, MinChunkSize)
	if _, err := f.WriteAt(ctx, data, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Flush(ctx); err != nil { // d1 times out; d2 has the copy
		t.Fatal(err)
	}
	// More writes take buffers from the pool meanwhile.
	for i := range 4 {
		if _, err := f.WriteAt(ctx, randBytes(uint64(100+i), MinChunkSize), int64(i+1)*MinChunkSize); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	hung.Set(nodes.Faults{}) // the late Put goes on now
	id := tp.sum(data)
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := hung.Get(id, nil)
		if err == nil {
			if !bytes.Equal(got, data) {
				t.Fatal("the late copy on the hung drive holds other bytes than the chunk's")
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the late Put never landed: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
