package cluster

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/dhdfs/dhdfs/cluster/kv"
	"github.com/dhdfs/dhdfs/nodes"
)

// Truncation changes layers only: it works while every drive fails
// writes, and growing the file afterwards reads zeros past the cut (no
// slot ever shows bytes past the size).
func TestTruncateNeedsNoDrive(t *testing.T) {
	onDisk(t) // its fault hits the store, and a directory drive's journal takes the round
	tp := newTestPool(t, 1, 1)
	ctx := context.Background()
	data := bytes.Repeat([]byte{0xAA}, 100_000)
	tp.put("/f", data)
	n, _ := tp.Resolve("/f")
	f, err := tp.OpenFile(n.Ino)
	if err != nil {
		t.Fatal(err)
	}
	tp.fault("d1", nodes.Faults{WriteErr: errors.New("injected")})
	if err := f.Truncate(ctx, 10_000); err != nil {
		t.Fatalf("truncate with a failing drive: %v", err)
	}
	if err := f.Truncate(ctx, 30_000); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(ctx); err != nil {
		t.Fatal(err)
	}
	tp.fault("d1", nodes.Faults{})
	for _, d := range tp.driveList() {
		tp.tryRevive(d) // its failed syncs marked it failed
	}
	want := make([]byte, 30_000)
	copy(want, data[:10_000])
	tp.mustEqual("/f", want)
	if a, _ := tp.GetAttr(n.Ino); a.Stored != 10_000 {
		t.Fatalf("stored bytes %d, want 10000", a.Stored)
	}
	if rep, err := tp.Fsck(ctx, false, nil); err != nil || len(rep.Problems) > 0 {
		t.Fatalf("fsck: %v %+v", err, rep.Problems)
	}
}

// A crash after a truncation lowered the size but before it dropped the
// chunks past it: the next open drops them, so growing the file reads
// zeros, and fsck is clean.
func TestTruncateFinishedAfterCrash(t *testing.T) {
	onDisk(t) // a crash
	tp := newTestPool(t, 2, 2)
	data := randBytes(5, 5*MinChunkSize)
	tp.put("/f", data)
	n, _ := tp.Resolve("/f")
	// What a crash right after truncate's transaction leaves: the new
	// size, the marker, and the chunks past the end still there.
	err := tp.meta.update(func(txn kv.Txn) error {
		i, err := getInode(txn, n.Ino)
		if err != nil {
			return err
		}
		i.Size = MinChunkSize
		if err := putInode(txn, &i); err != nil {
			return err
		}
		return set(txn, inoKey(kTruncate, n.Ino), nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	tp.reopen()
	size := int64(5 * MinChunkSize)
	if _, err := tp.SetAttr(context.Background(), n.Ino, SetAttrIn{Size: &size}); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, size)
	copy(want, data[:MinChunkSize])
	tp.mustEqual("/f", want)
	if rep, err := tp.Fsck(context.Background(), false, nil); err != nil || len(rep.Problems) > 0 {
		t.Fatalf("fsck: %v %+v", err, rep.Problems)
	}
}
