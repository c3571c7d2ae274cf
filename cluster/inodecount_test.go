package cluster

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/dhdfs/dhdfs/cluster/kv"
)

// The last Close of an unlinked file and the kernel's Forget of it arrive
// together (RELEASE and FORGET are sent at the same moment). The inode
// must be freed once and counted once.
func TestInodeCountCloseForgetRace(t *testing.T) {
	tp := newTestPool(t, 2, 1)
	ctx := context.Background()
	data := randBytes(1, 40*MinChunkSize)
	for round := 0; round < 20; round++ {
		name := fmt.Sprintf("f%d", round)
		n, err := tp.Mknod(RootIno, name, 0o644, Caller{}, "")
		if err != nil {
			t.Fatal(err)
		}
		tp.Hold(n.Ino)
		f, err := tp.OpenFile(n.Ino)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(ctx, data, 0); err != nil {
			t.Fatal(err)
		}
		if err := f.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if err := tp.Unlink(RootIno, name); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); f.Close(ctx) }()
		go func() {
			defer wg.Done()
			for tp.openFile(n.Ino) != nil {
			}
			tp.Forget(n.Ino)
		}()
		wg.Wait()
	}
	got, _ := tp.InodeCount()
	rep, err := tp.Fsck(ctx, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got != 1 || len(rep.Problems) > 0 {
		t.Fatalf("inode count %d (want 1: the root); fsck: %+v", got, rep.Problems)
	}
}

// Two frees of one orphan at once (the same race, directly).
func TestFreeOrphanTwice(t *testing.T) {
	tp := newTestPool(t, 2, 1)
	ctx := context.Background()
	for round := 0; round < 10; round++ {
		name := fmt.Sprintf("g%d", round)
		tp.put("/"+name, randBytes(uint64(round), 40*MinChunkSize))
		n, _ := tp.Resolve("/" + name)
		tp.Hold(n.Ino)
		if err := tp.Unlink(RootIno, name); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); tp.freeOrphan(n.Ino) }()
		go func() { defer wg.Done(); tp.freeOrphan(n.Ino) }()
		wg.Wait()
	}
	got, _ := tp.InodeCount()
	rep, _ := tp.Fsck(ctx, false, nil)
	if got != 1 {
		t.Fatalf("inode count %d, want 1; fsck: %+v", got, rep.Problems)
	}
}

// A pool from before the inode count was kept, opened with an orphan to
// free (a file unlinked while open when it last closed), must end up with
// the right count.
func TestInodeCountUpgradeWithOrphan(t *testing.T) {
	onDisk(t) // edits the Badger store
	tp := newTestPool(t, 1, 1)
	for i := range 5 {
		tp.put(fmt.Sprintf("/f%d", i), []byte("x"))
	}
	n, _ := tp.Resolve("/f0")
	tp.Hold(n.Ino) // the kernel still knows it
	if err := tp.Unlink(RootIno, "f0"); err != nil {
		t.Fatal(err)
	}
	// Make it an old pool: no count.
	if err := tp.meta.update(func(txn kv.Txn) error { return txn.Delete(inodeCountKey) }); err != nil {
		t.Fatal(err)
	}
	tp.reopen()
	got, _ := tp.InodeCount()
	rep, _ := tp.Fsck(context.Background(), false, nil)
	if got != 5 { // root + f1..f4
		t.Fatalf("inode count %d, want 5; fsck: %+v", got, rep.Problems)
	}
}
