package cluster

import (
	"errors"
	"fmt"
	"syscall"
	"testing"
)

// Device nodes, set-group-ID directories, whiteouts and tmpfiles, through
// the inode API, leave a pool fsck finds clean.
func TestNamespacePosix(t *testing.T) {
	tp := newTestPool(t, 2, 2)
	c := Caller{Uid: 1000, Gid: 1000}
	dev, err := tp.Make(RootIno, "dev", NodeSpec{Mode: syscall.S_IFBLK | 0o600, Rdev: 0x801}, c)
	if err != nil || dev.Rdev != 0x801 || dev.Mode != syscall.S_IFBLK|0o600 {
		t.Fatalf("block device: %+v %v", dev, err)
	}
	if _, err := tp.Make(RootIno, "bad", NodeSpec{Mode: 0o170000}, c); !errors.Is(err, ErrInvalid) {
		t.Fatalf("unknown file type: %v", err)
	}
	// Set-group-ID directory.
	sg, _ := tp.Make(RootIno, "sg", NodeSpec{Mode: syscall.S_IFDIR | syscall.S_ISGID | 0o775}, Caller{Uid: 0, Gid: 50})
	sub, _ := tp.Make(sg.Ino, "sub", NodeSpec{Mode: syscall.S_IFDIR | 0o755}, c)
	f, _ := tp.Make(sub.Ino, "f", NodeSpec{Mode: 0o644}, c)
	if sub.Gid != 50 || sub.Mode&syscall.S_ISGID == 0 || f.Gid != 50 || f.Mode&syscall.S_ISGID != 0 {
		t.Fatalf("in a set-group-ID directory: sub gid %d mode %o, file gid %d mode %o", sub.Gid, sub.Mode, f.Gid, f.Mode)
	}
	tmp, err := tp.Tmpfile(sg.Ino, 0o600, c)
	if err != nil || tmp.Gid != 50 || tmp.Nlink != 0 {
		t.Fatalf("tmpfile in a set-group-ID directory: %+v %v", tmp, err)
	}
	// A tmpfile named by Link survives; one never named is freed.
	if _, err := tp.Link(tmp.Ino, RootIno, "kept"); err != nil {
		t.Fatal(err)
	}
	gone, _ := tp.Tmpfile(RootIno, 0o600, c)
	if err := tp.maybeFree(gone.Ino); err != nil {
		t.Fatal(err)
	}
	if _, err := tp.GetAttr(gone.Ino); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unnamed tmpfile after release: %v", err)
	}
	if err := tp.maybeFree(tmp.Ino); err != nil {
		t.Fatal(err)
	}
	if n, err := tp.Resolve("/kept"); err != nil || n.Nlink != 1 {
		t.Fatalf("named tmpfile: %+v %v", n, err)
	}
	// Whiteout.
	tp.put("/w", []byte("w"))
	if err := tp.RenameAs(RootIno, "w", RootIno, "w2", RenameWhiteout, c); err != nil {
		t.Fatal(err)
	}
	wo, err := tp.Resolve("/w")
	if err != nil || wo.Mode != syscall.S_IFCHR || wo.Rdev != 0 || wo.Uid != 1000 {
		t.Fatalf("whiteout: %+v %v", wo, err)
	}
	if err := tp.Rename(RootIno, "w2", RootIno, "w", RenameExchange|RenameWhiteout); !errors.Is(err, ErrInvalid) {
		t.Fatalf("exchange with whiteout: %v", err)
	}
	rep, err := tp.Fsck(t.Context(), false, nil)
	if err != nil || len(rep.Problems) > 0 {
		t.Fatalf("fsck: %v %+v", err, rep.Problems)
	}
	n, _ := tp.InodeCount()
	// root, dev, sg, sub, f, kept, w2, the whiteout
	if n != 8 {
		t.Fatalf("inode count %d, want 8", n)
	}
}

// ReadDirAfter pages through a directory in name order.
func TestReadDirAfter(t *testing.T) {
	tp := newTestPool(t, 1, 1)
	for i := range 25 {
		if _, err := tp.Mknod(RootIno, fmt.Sprintf("n%02d", i), 0o644, Caller{}, ""); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	after := ""
	for {
		page, err := tp.ReadDirAfter(RootIno, after, 7)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, e := range page {
			got = append(got, e.Name)
		}
		after = page[len(page)-1].Name
	}
	if len(got) != 25 || got[0] != "n00" || got[24] != "n24" {
		t.Fatalf("paged listing: %v", got)
	}
	// Resuming after a name that is gone continues after where it was.
	if err := tp.Unlink(RootIno, "n10"); err != nil {
		t.Fatal(err)
	}
	page, _ := tp.ReadDirAfter(RootIno, "n10", 2)
	if len(page) != 2 || page[0].Name != "n11" {
		t.Fatalf("after a removed name: %v", page)
	}
	if _, err := tp.ReadDirAfter(page[0].Ino, "", 1); !errors.Is(err, ErrNotDir) {
		t.Fatalf("listing a file: %v", err)
	}
}
