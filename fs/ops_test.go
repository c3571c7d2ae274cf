package fs

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dhdfs/dhdfs/cluster"
	"github.com/dhdfs/dhdfs/nodes"
)

const cs = cluster.MinChunkSize

func randData(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 99))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCreateWriteReadAcrossRemount(t *testing.T) {
	tm := mountPool(t, 3, cs)
	for _, n := range []int{0, 1, cs - 1, cs, 3*cs + 17} {
		data := randData(uint64(n), n)
		p := tm.path("f" + strconv.Itoa(n))
		if err := os.WriteFile(p, data, 0o640); err != nil {
			t.Fatal(err)
		}
		if got := mustRead(t, p); !bytes.Equal(got, data) {
			t.Fatalf("%d bytes: read back differs", n)
		}
		st, err := os.Stat(p)
		if err != nil || st.Size() != int64(n) || st.Mode().Perm() != 0o640 {
			t.Fatalf("stat: %v %v", st, err)
		}
	}
	// After close the data is in the pool itself, not only in kernel caches.
	var buf bytes.Buffer
	if _, err := tm.m.GetFile(t.Context(), "/f"+strconv.Itoa(3*cs+17), &buf); err != nil || !bytes.Equal(buf.Bytes(), randData(uint64(3*cs+17), 3*cs+17)) {
		t.Fatalf("pool content after close: %v", err)
	}
}

func TestOpenFlags(t *testing.T) {
	tm := mountPool(t, 2, cs)
	p := tm.path("f")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("hello"))
	f.Close()
	if _, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644); !errors.Is(err, os.ErrExist) {
		t.Fatalf("O_EXCL on an existing file: %v", err)
	}
	f, _ = os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	f.Write([]byte(" world"))
	f.Close()
	if got := string(mustRead(t, p)); got != "hello world" {
		t.Fatalf("after O_APPEND: %q", got)
	}
	f, _ = os.OpenFile(p, os.O_TRUNC|os.O_WRONLY, 0)
	f.Write([]byte("new"))
	f.Close()
	if got := string(mustRead(t, p)); got != "new" {
		t.Fatalf("after O_TRUNC: %q", got)
	}
}

func TestWriteAtOffsetsAndHoles(t *testing.T) {
	tm := mountPool(t, 2, cs)
	p := tm.path("sparse")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ref := make([]byte, 5*cs+100)
	write := func(off int, b []byte) {
		t.Helper()
		if _, err := f.WriteAt(b, int64(off)); err != nil {
			t.Fatal(err)
		}
		copy(ref[off:], b)
	}
	write(5*cs, randData(1, 100))   // far past the end: a hole before it
	write(cs/2, randData(2, cs))    // across a chunk boundary
	write(2*cs+10, randData(3, 20)) // inside a hole
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	write(cs/2+5, []byte("rewrite")) // inside an existing, committed chunk
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(ref))
	if _, err := f.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, ref) {
		t.Fatal("content differs from the reference")
	}
	locs, _ := tm.m.StatPath("/sparse", true)
	slots := map[int64]bool{}
	for _, c := range locs.Chunks {
		slots[c.Index] = true
	}
	if len(slots) != 4 {
		t.Fatalf("chunks stored in %d slots, want 4: holes must not be stored (%+v)", len(slots), locs.Chunks)
	}
}

func TestTruncateAndAttrs(t *testing.T) {
	tm := mountPool(t, 2, cs)
	p := tm.path("f")
	data := randData(5, 3*cs)
	os.WriteFile(p, data, 0o644)
	for _, size := range []int64{cs + 7, 4 * cs, 0, 10} {
		if err := os.Truncate(p, size); err != nil {
			t.Fatal(err)
		}
		want := make([]byte, size)
		if size == cs+7 {
			copy(want, data)
		}
		if size == 4*cs {
			copy(want, data[:cs+7])
		}
		if got := mustRead(t, p); !bytes.Equal(got, want) {
			t.Fatalf("after truncate to %d: content differs", size)
		}
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, 1234, 5678); err != nil {
		t.Fatal(err)
	}
	when := time.Date(2020, 1, 2, 3, 4, 5, 6000, time.UTC)
	if err := os.Chtimes(p, when, when); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&0o777 != 0o600 || st.Uid != 1234 || st.Gid != 5678 || time.Unix(st.Mtim.Unix()).UTC() != when {
		t.Fatalf("attrs: mode %o uid %d gid %d mtime %v", st.Mode&0o777, st.Uid, st.Gid, time.Unix(st.Mtim.Unix()))
	}
}

// cp -p sets times while the file is still open; the flush at close must
// not overwrite them.
func TestUtimensBeforeClose(t *testing.T) {
	tm := mountPool(t, 2, cs)
	f, err := os.Create(tm.path("f"))
	if err != nil {
		t.Fatal(err)
	}
	f.Write(randData(9, 1000))
	when := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	if err := os.Chtimes(tm.path("f"), when, when); err != nil {
		t.Fatal(err)
	}
	f.Close()
	st, _ := os.Stat(tm.path("f"))
	if !st.ModTime().Equal(when) {
		t.Fatalf("mtime %v after close, want %v", st.ModTime(), when)
	}
}

func TestNamespaceOps(t *testing.T) {
	tm := mountPool(t, 2, cs)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(tm.path("a/b"), 0o755))
	must(os.WriteFile(tm.path("a/b/f"), []byte("f"), 0o644))
	must(os.WriteFile(tm.path("a/g"), []byte("g"), 0o644))
	if err := os.Remove(tm.path("a")); !errors.Is(err, syscall.ENOTEMPTY) {
		t.Fatalf("rmdir of a non-empty dir: %v", err)
	}
	// rename replaces an existing file atomically
	must(os.Rename(tm.path("a/g"), tm.path("a/b/f")))
	if got := string(mustRead(t, tm.path("a/b/f"))); got != "g" {
		t.Fatalf("after rename over: %q", got)
	}
	must(os.WriteFile(tm.path("a/h"), []byte("h"), 0o644))
	if err := unix.Renameat2(unix.AT_FDCWD, tm.path("a/h"), unix.AT_FDCWD, tm.path("a/b/f"), unix.RENAME_NOREPLACE); !errors.Is(err, syscall.EEXIST) {
		t.Fatalf("RENAME_NOREPLACE over an existing file: %v", err)
	}
	must(os.Link(tm.path("a/h"), tm.path("hardlink")))
	var s1, s2 syscall.Stat_t
	must(syscall.Stat(tm.path("a/h"), &s1))
	must(syscall.Stat(tm.path("hardlink"), &s2))
	if s1.Ino != s2.Ino || s1.Nlink != 2 {
		t.Fatalf("hard link: inodes %d %d nlink %d", s1.Ino, s2.Ino, s1.Nlink)
	}
	must(os.Symlink("a/h", tm.path("sym")))
	if target, err := os.Readlink(tm.path("sym")); err != nil || target != "a/h" {
		t.Fatalf("readlink: %q %v", target, err)
	}
	if got := string(mustRead(t, tm.path("sym"))); got != "h" {
		t.Fatalf("read through symlink: %q", got)
	}
	must(syscall.Mknod(tm.path("node"), syscall.S_IFREG|0o644, 0))
	must(syscall.Mknod(tm.path("dev"), syscall.S_IFCHR|0o644, 0x101))
	var dev syscall.Stat_t
	must(syscall.Lstat(tm.path("dev"), &dev))
	if dev.Rdev != 0x101 || dev.Mode != syscall.S_IFCHR|0o644 {
		t.Fatalf("mknod of a device: rdev %#x mode %o", dev.Rdev, dev.Mode)
	}
	must(os.Remove(tm.path("dev")))
	long := strings.Repeat("x", 256)
	if err := os.WriteFile(tm.path(long), nil, 0o644); !errors.Is(err, syscall.ENAMETOOLONG) {
		t.Fatalf("256-byte name: %v", err)
	}
	entries, err := os.ReadDir(tm.path("a"))
	must(err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "b h" {
		t.Fatalf("readdir: %v", names)
	}
	must(os.RemoveAll(tm.path("a")))
	if _, err := os.Stat(tm.path("a")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after RemoveAll: %v", err)
	}
}

func TestXattrs(t *testing.T) {
	tm := mountPool(t, 3, cs)
	os.Mkdir(tm.path("d"), 0o755)
	if err := unix.Setxattr(tm.path("d"), cluster.XattrReplicas, []byte("3"), 0); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(tm.path("d/f"), randData(1, 2*cs), 0o644)
	buf := make([]byte, 4096)
	n, err := unix.Getxattr(tm.path("d/f"), cluster.XattrReplicas, buf)
	if err != nil || string(buf[:n]) != "3" {
		t.Fatalf("inherited replicas: %q %v", buf[:n], err)
	}
	n, err = unix.Getxattr(tm.path("d/f"), cluster.XattrLocations, buf)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(buf[:n])), "\n")
	if len(lines) != 2 || strings.Count(lines[0], ",") != 2 {
		t.Fatalf("locations = %q, want 2 chunks on 3 drives each", buf[:n])
	}
	if err := unix.Setxattr(tm.path("d/f"), cluster.XattrLocations, []byte("x"), 0); err == nil {
		t.Fatal("locations is writable")
	}
	if err := unix.Setxattr(tm.path("d/f"), cluster.XattrReplicas, []byte("zero"), 0); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("bad replicas value: %v", err)
	}
	if err := unix.Setxattr(tm.path("d/f"), "user.note", []byte("v1"), 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(tm.path("d/f"), "user.note", []byte("v2"), unix.XATTR_CREATE); !errors.Is(err, syscall.EEXIST) {
		t.Fatalf("XATTR_CREATE on existing: %v", err)
	}
	n, _ = unix.Getxattr(tm.path("d/f"), "user.note", buf)
	if string(buf[:n]) != "v1" {
		t.Fatalf("user.note = %q", buf[:n])
	}
	n, _ = unix.Listxattr(tm.path("d/f"), buf)
	// The pool's own attributes answer by name but are not listed.
	if got := strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00"); strings.Join(got, ",") != "user.note" {
		t.Fatalf("listxattr = %q", got)
	}
	if err := unix.Removexattr(tm.path("d/f"), "user.note"); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Getxattr(tm.path("d/f"), "user.note", buf); !errors.Is(err, syscall.ENODATA) {
		t.Fatalf("removed attribute: %v", err)
	}
}

func TestStatfs(t *testing.T) {
	tm := mountPool(t, 3, cs)
	var st, under syscall.Statfs_t
	if err := syscall.Statfs(tm.mnt, &st); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Statfs(filepath.Dir(tm.mnt), &under); err != nil {
		t.Fatal(err)
	}
	// Three drives on one filesystem, replicas 2: half the disk is usable.
	want := under.Bavail * uint64(under.Bsize) / 2
	got := st.Bavail * uint64(st.Bsize)
	if got < want*9/10 || got > want*11/10 {
		t.Fatalf("statfs free %d, want about %d", got, want)
	}
}

func TestOpenFileSemantics(t *testing.T) {
	tm := mountPool(t, 2, cs)
	p := tm.path("f")
	w1, _ := os.Create(p)
	w2, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	w1.WriteAt([]byte("aaaa"), 0)
	// Another handle sees unflushed writes, and stat shows the size.
	got := make([]byte, 4)
	if _, err := w2.ReadAt(got, 0); err != nil || string(got) != "aaaa" {
		t.Fatalf("second handle read %q, %v", got, err)
	}
	w2.WriteAt([]byte("bb"), 2*cs)
	if st, _ := os.Stat(p); st.Size() != 2*cs+2 {
		t.Fatalf("size while writing = %d, want %d", st.Size(), 2*cs+2)
	}
	// Unlinked while open: still readable until the last close.
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if _, err := w1.ReadAt(got[:2], 2*cs); err != nil || string(got[:2]) != "bb" {
		t.Fatalf("read of an unlinked open file: %q %v", got[:2], err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(w1.Fd()), &st); err != nil || st.Nlink != 0 {
		t.Fatalf("fstat of unlinked file: nlink %d, %v", st.Nlink, err)
	}
	w1.Close()
	w2.Close()
}

// A drive failing while files are open breaks nothing: reads fall back,
// writes go to the other drives.
func TestDriveFailsWhileOpen(t *testing.T) {
	for _, how := range []string{"io-errors", "offline", "directory-removed"} {
		t.Run(how, func(t *testing.T) {
			tm := mountPool(t, 3, cs)
			data := randData(7, 6*cs)
			os.WriteFile(tm.path("f"), data, 0o644)
			r, err := os.Open(tm.path("f"))
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			w, err := os.Create(tm.path("g"))
			if err != nil {
				t.Fatal(err)
			}
			fresh := randData(8, 6*cs) // unlike data, so nothing deduplicates
			w.Write(fresh[:cs])
			switch how {
			case "io-errors":
				tm.faulty["d1"].Set(nodes.Faults{ReadErr: syscall.EIO, WriteErr: syscall.EIO})
			case "offline":
				if _, err := tm.m.SetDriveOffline("d1", true); err != nil {
					t.Fatal(err)
				}
			case "directory-removed":
				drives, _ := tm.m.Drives()
				os.RemoveAll(drives[0].Path)
				tm.faulty["d1"].Set(nodes.Faults{ReadErr: syscall.ENOENT, WriteErr: syscall.ENOENT})
			}
			got := make([]byte, len(data))
			if _, err := r.ReadAt(got, 0); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read with d1 gone: %v", err)
			}
			if _, err := w.Write(fresh[cs:]); err != nil {
				t.Fatalf("write with d1 gone: %v", err)
			}
			if err := w.Close(); err != nil {
				t.Fatalf("close with d1 gone: %v", err)
			}
			if got := mustRead(t, tm.path("g")); !bytes.Equal(got, fresh) {
				t.Fatal("file written while d1 failed reads back wrong")
			}
			locs, _ := tm.m.StatPath("/g", true)
			for _, l := range locs.Chunks[1:] { // chunk 0 was written before
				if len(l.Drives) != 2 || slices.Contains(l.Drives, "d1") {
					t.Fatalf("chunk %d of the new file on %v, want 2 copies off d1", l.Index, l.Drives)
				}
			}
		})
	}
}

func TestConcurrentFiles(t *testing.T) {
	tm := mountPool(t, 3, cs)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			data := randData(uint64(100+i), cs*(i+1)/2+i)
			p := tm.path("c" + strconv.Itoa(i))
			if err := os.WriteFile(p, data, 0o644); err != nil {
				errs <- err
				return
			}
			if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, data) {
				errs <- errors.New(p + " read back wrong")
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
