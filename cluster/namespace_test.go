package cluster

import (
	"errors"
	"strings"
	"syscall"
	"testing"
)

func TestNamespace(t *testing.T) {
	tp := newTestPool(t, 2, 2)
	c := Caller{Uid: 1000, Gid: 1000}
	mk := func(p string) Inode {
		t.Helper()
		n, err := tp.MkdirPath(p, true, 0o755, c)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	a := mk("/a")
	b := mk("/a/b")
	tp.put("/a/f", []byte("file f"))
	tp.put("/a/b/g", []byte("file g"))

	tests := []struct {
		name string
		op   func() error
		want error
	}{
		{"mkdir existing", func() error { _, err := tp.Mknod(RootIno, "a", syscall.S_IFDIR|0o755, c, ""); return err }, ErrExist},
		{"create in a file", func() error { _, err := tp.MkdirPath("/a/f/x", false, 0o755, c); return err }, ErrNotDir},
		{"empty name", func() error { _, err := tp.Mknod(RootIno, "", 0o644, c, ""); return err }, ErrInvalid},
		{"dot name", func() error { _, err := tp.Mknod(RootIno, "..", 0o644, c, ""); return err }, ErrInvalid},
		{"name too long", func() error { _, err := tp.Mknod(RootIno, strings.Repeat("x", 256), 0o644, c, ""); return err }, ErrNameTooLong},
		{"rmdir non-empty", func() error { return tp.Rmdir(a.Ino, "b") }, ErrNotEmpty},
		{"rmdir a file", func() error { return tp.Rmdir(a.Ino, "f") }, ErrNotDir},
		{"unlink a dir", func() error { return tp.Unlink(RootIno, "a") }, ErrIsDir},
		{"unlink missing", func() error { return tp.Unlink(RootIno, "zz") }, ErrNotFound},
		{"rename into own subtree", func() error { return tp.Rename(RootIno, "a", b.Ino, "a2", 0) }, ErrInvalid},
		{"rename dir over file", func() error { return tp.Rename(a.Ino, "b", a.Ino, "f", 0) }, ErrNotDir},
		{"rename file over dir", func() error { return tp.Rename(a.Ino, "f", a.Ino, "b", 0) }, ErrIsDir},
		{"rename noreplace", func() error { return tp.Rename(b.Ino, "g", a.Ino, "f", RenameNoReplace) }, ErrExist},
		{"exchange missing", func() error { return tp.Rename(b.Ino, "g", a.Ino, "zz", RenameExchange) }, ErrNotFound},
		{"hard link a dir", func() error { _, err := tp.Link(b.Ino, RootIno, "bl"); return err }, syscall.EPERM},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.op(); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	tp.mustEqual("/a/f", []byte("file f"))
	tp.mustEqual("/a/b/g", []byte("file g"))
}

func TestRenameAndLinks(t *testing.T) {
	tp := newTestPool(t, 2, 2)
	c := Caller{}
	d1, _ := tp.MkdirPath("/d1", false, 0o755, c)
	d2, _ := tp.MkdirPath("/d2", false, 0o755, c)
	f := tp.put("/d1/f", []byte("one"))
	tp.put("/d2/g", []byte("two"))

	// Replace /d2/g by /d1/f: g's content is freed, f's name moves.
	if err := tp.Rename(d1.Ino, "f", d2.Ino, "g", 0); err != nil {
		t.Fatal(err)
	}
	tp.mustEqual("/d2/g", []byte("one"))
	if _, err := tp.Resolve("/d1/f"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old name still resolves: %v", err)
	}
	// A hard link keeps the content alive when the first name goes.
	if _, err := tp.Link(f.Ino, d1.Ino, "link"); err != nil {
		t.Fatal(err)
	}
	if n, _ := tp.GetAttr(f.Ino); n.Nlink != 2 {
		t.Fatalf("nlink after link = %d, want 2", n.Nlink)
	}
	if err := tp.Unlink(d2.Ino, "g"); err != nil {
		t.Fatal(err)
	}
	tp.mustEqual("/d1/link", []byte("one"))
	// Moving a directory updates both parents' link counts.
	sub, _ := tp.MkdirPath("/d1/sub", false, 0o755, c)
	if err := tp.Rename(d1.Ino, "sub", d2.Ino, "sub", 0); err != nil {
		t.Fatal(err)
	}
	n1, _ := tp.GetAttr(d1.Ino)
	n2, _ := tp.GetAttr(d2.Ino)
	if n1.Nlink != 2 || n2.Nlink != 3 {
		t.Fatalf("parent nlinks after moving a dir: %d and %d, want 2 and 3", n1.Nlink, n2.Nlink)
	}
	if s, _ := tp.GetAttr(sub.Ino); s.Parent != d2.Ino {
		t.Fatalf("moved dir's parent = %d, want %d", s.Parent, d2.Ino)
	}
	// Exchange swaps two names atomically.
	tp.put("/d2/x", []byte("x"))
	tp.put("/d2/y", []byte("y"))
	if err := tp.Rename(d2.Ino, "x", d2.Ino, "y", RenameExchange); err != nil {
		t.Fatal(err)
	}
	tp.mustEqual("/d2/x", []byte("y"))
	tp.mustEqual("/d2/y", []byte("x"))
	// Symlinks keep their target.
	if _, err := tp.Mknod(d2.Ino, "ln", syscall.S_IFLNK|0o777, c, "../d1/link"); err != nil {
		t.Fatal(err)
	}
	if ln, _ := tp.Resolve("/d2/ln"); ln.Target != "../d1/link" || !ln.IsSymlink() {
		t.Fatalf("symlink = %+v", ln)
	}
	entries, err := tp.ReadDir(d2.Ino)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name)
	}
	if strings.Join(names, ",") != "ln,sub,x,y" {
		t.Fatalf("readdir = %v", names)
	}
	if err := tp.RemovePath("/d2", true); err != nil {
		t.Fatal(err)
	}
	st, _ := tp.Status()
	if st.Dirs != 2 || st.Files != 1 {
		t.Fatalf("after rm -r: %d dirs %d files, want 2 (root, d1) and 1", st.Dirs, st.Files)
	}
}

func TestUnlinkedOpenFileStaysReadable(t *testing.T) {
	tp := newTestPool(t, 2, 2)
	data := randBytes(21, 2*MinChunkSize)
	n := tp.put("/f", data)
	f, err := tp.OpenFile(n.Ino)
	if err != nil {
		t.Fatal(err)
	}
	if err := tp.Unlink(RootIno, "f"); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	if k, err := tp.ReadAt(t.Context(), n.Ino, got, 0); k != len(data) || string(got) != string(data) {
		t.Fatalf("read of unlinked open file: %d %v", k, err)
	}
	if err := f.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := tp.GetAttr(n.Ino); !errors.Is(err, ErrNotFound) {
		t.Fatalf("inode survives its last release: %v", err)
	}
	tp.flushDeletes()
	for name, c := range tp.storedChunks() {
		if c != 0 {
			t.Fatalf("drive %s still holds %d chunks", name, c)
		}
	}
}
