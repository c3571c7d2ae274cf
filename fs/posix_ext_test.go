package fs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dhdfs/dhdfs/cluster"
)

// Device nodes keep their type and number; the mount is nodev, so they
// cannot be opened.
func TestDeviceNodes(t *testing.T) {
	tm := mountPool(t, 2, cs)
	for _, tc := range []struct {
		name string
		typ  uint32
	}{{"chr", syscall.S_IFCHR}, {"blk", syscall.S_IFBLK}} {
		p := tm.path(tc.name)
		dev := int(unix.Mkdev(8, 257))
		if err := syscall.Mknod(p, tc.typ|0o640, dev); err != nil {
			t.Fatalf("mknod %s: %v", tc.name, err)
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		if st.Mode != tc.typ|0o640 || st.Rdev != uint64(dev) || unix.Major(st.Rdev) != 8 || unix.Minor(st.Rdev) != 257 {
			t.Fatalf("%s: mode %o rdev %d:%d", tc.name, st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
		var sx unix.Statx_t
		if err := unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS, &sx); err != nil {
			t.Fatal(err)
		}
		if sx.Rdev_major != 8 || sx.Rdev_minor != 257 {
			t.Fatalf("statx %s: rdev %d:%d", tc.name, sx.Rdev_major, sx.Rdev_minor)
		}
		if f, err := os.Open(p); err == nil {
			f.Close()
			t.Fatalf("opened a device node on a nodev mount")
		}
	}
}

// A name over 255 bytes fails with ENAMETOOLONG in every call that looks
// it up, as on ext4, not with ENOENT.
func TestLongNames(t *testing.T) {
	tm := mountPool(t, 2, cs)
	long := tm.path(strings.Repeat("x", 256))
	ok := tm.path("f")
	if err := os.WriteFile(ok, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, call := range map[string]func() error{
		"stat":      func() error { _, err := os.Lstat(long); return err },
		"chmod":     func() error { return os.Chmod(long, 0o600) },
		"chown":     func() error { return os.Lchown(long, 1, 1) },
		"truncate":  func() error { return os.Truncate(long, 0) },
		"unlink":    func() error { return os.Remove(long) },
		"rmdir":     func() error { return syscall.Rmdir(long) },
		"link":      func() error { return os.Link(ok, long) },
		"link src":  func() error { return os.Link(long, tm.path("g")) },
		"rename":    func() error { return os.Rename(long, tm.path("g")) },
		"rename to": func() error { return os.Rename(ok, long) },
		"mkdir":     func() error { return os.Mkdir(long, 0o755) },
		"symlink":   func() error { return os.Symlink("f", long) },
		"create":    func() error { return os.WriteFile(long, nil, 0o644) },
	} {
		if err := call(); !errors.Is(err, syscall.ENAMETOOLONG) {
			t.Errorf("%s of a 256-byte name: %v, want ENAMETOOLONG", name, err)
		}
	}
	exact := tm.path(strings.Repeat("y", 255))
	if err := os.WriteFile(exact, []byte("ok"), 0o644); err != nil {
		t.Fatalf("255-byte name: %v", err)
	}
}

// In a set-group-ID directory new files, directories, nodes and symlinks
// take the directory's group, and new directories keep the bit.
func TestSetgidDirectory(t *testing.T) {
	tm := mountPool(t, 2, cs)
	d := tm.path("shared")
	const gid = 4321
	if err := os.Mkdir(d, 0o775); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(d, 0, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o775|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(d+"/file", nil, 0o644))
	must(os.Mkdir(d+"/sub", 0o755))
	must(syscall.Mknod(d+"/fifo", syscall.S_IFIFO|0o644, 0))
	must(os.Symlink("file", d+"/link"))
	must(os.WriteFile(d+"/sub/deeper", nil, 0o644))
	for _, name := range []string{"file", "sub", "fifo", "link", "sub/deeper"} {
		var st syscall.Stat_t
		must(syscall.Lstat(d+"/"+name, &st))
		if st.Gid != gid {
			t.Errorf("%s: gid %d, want the directory's %d", name, st.Gid, gid)
		}
		isDir := st.Mode&syscall.S_IFMT == syscall.S_IFDIR
		if got := st.Mode&syscall.S_ISGID != 0; got != isDir {
			t.Errorf("%s: mode %o: set-group-ID %v, want %v", name, st.Mode, got, isDir)
		}
	}
	// Outside a set-group-ID directory the creator's group applies.
	must(os.WriteFile(tm.path("plain"), nil, 0o644))
	var st syscall.Stat_t
	must(syscall.Stat(tm.path("plain"), &st))
	if st.Gid != uint32(os.Getegid()) {
		t.Errorf("plain file: gid %d, want %d", st.Gid, os.Getegid())
	}
}

// O_TMPFILE makes a nameless file that linkat names; one never linked is
// freed when closed.
func TestTmpfile(t *testing.T) {
	tm := mountPool(t, 2, cs)
	before, err := tm.m.InodeCount()
	if err != nil {
		t.Fatal(err)
	}
	data := randData(7, 3*cs+11)
	fd, err := unix.Open(tm.mnt, unix.O_TMPFILE|unix.O_RDWR, 0o640)
	if err != nil {
		t.Fatalf("O_TMPFILE: %v", err)
	}
	if _, err := unix.Write(fd, data); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Nlink != 0 || st.Size != int64(len(data)) {
		t.Fatalf("fstat of a tmpfile: nlink %d size %d %v", st.Nlink, st.Size, err)
	}
	err = unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", fd), unix.AT_FDCWD, tm.path("named"), unix.AT_SYMLINK_FOLLOW)
	if err != nil {
		t.Fatalf("linkat: %v", err)
	}
	unix.Close(fd)
	if got := mustRead(t, tm.path("named")); !bytes.Equal(got, data) {
		t.Fatalf("linked tmpfile: %d bytes, content differs", len(got))
	}
	var named syscall.Stat_t
	if err := syscall.Stat(tm.path("named"), &named); err != nil || named.Nlink != 1 || named.Mode&0o777 != 0o640 {
		t.Fatalf("linked tmpfile: nlink %d mode %o %v", named.Nlink, named.Mode, err)
	}
	// A tmpfile never linked goes when closed, with its chunks.
	fd, err = unix.Open(tm.mnt, unix.O_TMPFILE|unix.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Write(fd, randData(8, 2*cs)); err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	want := before + 1 // "named"
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := tm.m.InodeCount()
		if err != nil {
			t.Fatal(err)
		}
		if n == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("inodes after closing an unlinked tmpfile: %d, want %d", n, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// O_TMPFILE|O_EXCL files cannot be linked (the kernel's rule).
	fd, err = unix.Open(tm.mnt, unix.O_TMPFILE|unix.O_RDWR|unix.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", fd), unix.AT_FDCWD, tm.path("excl"), unix.AT_SYMLINK_FOLLOW); err == nil {
		t.Fatal("linked an O_EXCL tmpfile")
	}
}

// RENAME_WHITEOUT leaves a whiteout (a 0:0 character device) at the old
// name; flags it cannot be combined with, or that do not exist, give
// EINVAL.
func TestRenameWhiteout(t *testing.T) {
	tm := mountPool(t, 2, cs)
	if err := os.WriteFile(tm.path("a"), []byte("content"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Renameat2(unix.AT_FDCWD, tm.path("a"), unix.AT_FDCWD, tm.path("b"), unix.RENAME_WHITEOUT); err != nil {
		t.Fatalf("RENAME_WHITEOUT: %v", err)
	}
	if got := string(mustRead(t, tm.path("b"))); got != "content" {
		t.Fatalf("renamed file: %q", got)
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(tm.path("a"), &st); err != nil {
		t.Fatalf("whiteout: %v", err)
	}
	if st.Mode != syscall.S_IFCHR || st.Rdev != 0 || st.Uid != uint32(os.Geteuid()) {
		t.Fatalf("whiteout: mode %o rdev %d uid %d", st.Mode, st.Rdev, st.Uid)
	}
	if err := os.WriteFile(tm.path("c"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, flags := range map[string]uint{
		"exchange|whiteout": unix.RENAME_EXCHANGE | unix.RENAME_WHITEOUT,
		"unknown flag":      1 << 3,
	} {
		if err := unix.Renameat2(unix.AT_FDCWD, tm.path("b"), unix.AT_FDCWD, tm.path("c"), flags); !errors.Is(err, syscall.EINVAL) {
			t.Errorf("rename with %s: %v, want EINVAL", name, err)
		}
	}
}

// dirent is one entry of getdents64.
type dirent struct {
	ino  uint64
	off  int64
	typ  uint8
	name string
}

// getdents reads one buffer of entries from fd.
func getdents(t *testing.T, fd int, size int) []dirent {
	t.Helper()
	buf := make([]byte, size)
	n, err := unix.Getdents(fd, buf)
	if err != nil {
		t.Fatalf("getdents: %v", err)
	}
	var out []dirent
	for b := buf[:n]; len(b) > 0; {
		reclen := binary.NativeEndian.Uint16(b[16:])
		name := b[19:reclen]
		out = append(out, dirent{
			ino:  binary.NativeEndian.Uint64(b),
			off:  int64(binary.NativeEndian.Uint64(b[8:])),
			typ:  b[18],
			name: string(name[:bytes.IndexByte(name, 0)]),
		})
		b = b[reclen:]
	}
	return out
}

// Listings show "." and ".." with their inode numbers, and directories a
// size of 4096.
func TestDotEntriesAndDirSize(t *testing.T) {
	tm := mountPool(t, 2, cs)
	if err := os.MkdirAll(tm.path("d/sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tm.path("d/f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var d, parent syscall.Stat_t
	syscall.Stat(tm.path("d"), &d)
	syscall.Stat(tm.mnt, &parent)
	if d.Size != cluster.DirSize || d.Blocks == 0 {
		t.Fatalf("directory size %d blocks %d, want %d", d.Size, d.Blocks, cluster.DirSize)
	}
	fd, err := unix.Open(tm.path("d"), unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var got []string
	for {
		ents := getdents(t, fd, 4096)
		if len(ents) == 0 {
			break
		}
		for _, e := range ents {
			got = append(got, e.name)
			switch e.name {
			case ".":
				if e.ino != d.Ino || e.typ != unix.DT_DIR {
					t.Errorf(". has inode %d type %d, want %d", e.ino, e.typ, d.Ino)
				}
			case "..":
				if e.ino != parent.Ino || e.typ != unix.DT_DIR {
					t.Errorf(".. has inode %d type %d, want %d", e.ino, e.typ, parent.Ino)
				}
			case "f":
				if e.typ != unix.DT_REG {
					t.Errorf("f has type %d", e.typ)
				}
			}
		}
	}
	if strings.Join(got, " ") != ". .. f sub" {
		t.Fatalf("listing: %q", got)
	}
}

// df -i: the inodes in use, out of a large number.
func TestStatfsInodes(t *testing.T) {
	tm := mountPool(t, 2, cs)
	var before, after syscall.Statfs_t
	if err := syscall.Statfs(tm.mnt, &before); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := os.WriteFile(tm.path(fmt.Sprint("f", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Statfs(tm.mnt, &after); err != nil {
		t.Fatal(err)
	}
	usedBefore, usedAfter := before.Files-before.Ffree, after.Files-after.Ffree
	if usedBefore != 1 || usedAfter != 11 || after.Ffree < 1<<32 {
		t.Fatalf("inodes used %d then %d (want 1, the root, then 11), free %d", usedBefore, usedAfter, after.Ffree)
	}
}

// statx reports the birth time, which later changes leave alone.
func TestBirthTime(t *testing.T) {
	tm := mountPool(t, 2, cs)
	start := time.Now()
	p := tm.path("f")
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	statx := func() unix.Statx_t {
		t.Helper()
		var sx unix.Statx_t
		if err := unix.Statx(unix.AT_FDCWD, p, unix.AT_STATX_FORCE_SYNC, unix.STATX_BASIC_STATS|unix.STATX_BTIME, &sx); err != nil {
			t.Fatal(err)
		}
		if sx.Mask&unix.STATX_BTIME == 0 {
			t.Fatalf("statx has no birth time (mask %#x)", sx.Mask)
		}
		return sx
	}
	sx := statx()
	birth := time.Unix(sx.Btime.Sec, int64(sx.Btime.Nsec))
	if birth.Before(start.Add(-time.Second)) || birth.After(time.Now()) {
		t.Fatalf("birth time %v, created at %v", birth, start)
	}
	time.Sleep(10 * time.Millisecond)
	if err := os.WriteFile(p, []byte("changed"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	sx2 := statx()
	if sx2.Btime != sx.Btime {
		t.Fatalf("birth time moved from %v to %v", sx.Btime, sx2.Btime)
	}
	if mt := time.Unix(sx2.Mtime.Sec, int64(sx2.Mtime.Nsec)); !mt.After(birth) {
		t.Fatalf("mtime %v not after birth %v", mt, birth)
	}
}

// Setting and removing extended attributes changes ctime; dhdfs's own
// attributes are not listed but answer by name.
func TestXattrCtimeAndListing(t *testing.T) {
	tm := mountPoolWith(t, 2, cs, func(c *Config) { c.Timeout = 0 })
	p := tm.path("f")
	if err := os.WriteFile(p, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctime := func() time.Time {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		return time.Unix(st.Ctim.Unix())
	}
	c0 := ctime()
	time.Sleep(10 * time.Millisecond)
	if err := unix.Setxattr(p, "user.a", []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	c1 := ctime()
	time.Sleep(10 * time.Millisecond)
	if err := unix.Removexattr(p, "user.a"); err != nil {
		t.Fatal(err)
	}
	c2 := ctime()
	if !c1.After(c0) || !c2.After(c1) {
		t.Fatalf("ctime %v, after setxattr %v, after removexattr %v", c0, c1, c2)
	}
	buf := make([]byte, 1024)
	if n, err := unix.Listxattr(p, buf); err != nil || n != 0 {
		t.Fatalf("listxattr of a file with no attributes: %q %v", buf[:n], err)
	}
	if n, err := unix.Getxattr(p, cluster.XattrLocations, buf); err != nil || n == 0 {
		t.Fatalf("%s by name: %v", cluster.XattrLocations, err)
	}
	if err := unix.Setxattr(p, "user.dhdfs.other", []byte("x"), 0); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("setting a reserved name: %v", err)
	}
}

// asNobody runs a command as the unprivileged user nobody.
func asNobody(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", "--"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("as nobody: %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// A write, truncate or chown by an unprivileged user clears the
// set-user-ID bit, and the set-group-ID bit of a group-executable file,
// as on a local filesystem (the kernel asks the mount to, as dhdfs does
// not claim to handle it itself).
func TestKillPrivs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to act as another user")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("no setpriv")
	}
	tm := mountPoolWith(t, 2, cs, func(c *Config) { c.AllowOther = true })
	// t.TempDir's directories are private: let nobody through to the mount.
	for d := filepath.Dir(tm.mnt); d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mode := func(p string) uint32 {
		t.Helper()
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		return st.Mode & 0o7777
	}
	setup := func(name string, perm os.FileMode, uid int) string {
		t.Helper()
		p := tm.path(name)
		if err := os.WriteFile(p, []byte("data"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, uid); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Chmod(p, uint32(perm)); err != nil {
			t.Fatal(err)
		}
		if got := mode(p); got != uint32(perm) {
			t.Fatalf("%s: mode %o after chmod %o", name, got, perm)
		}
		return p
	}
	p := setup("write", 0o6777, 0)
	asNobody(t, "sh", "-c", "echo more >> "+p)
	if got := mode(p); got != 0o777 {
		t.Errorf("after a write by another user: mode %o, want 777", got)
	}
	p = setup("truncate", 0o6777, 0)
	asNobody(t, "truncate", "-s", "1", p)
	if got := mode(p); got != 0o777 {
		t.Errorf("after a truncate by another user: mode %o, want 777", got)
	}
	p = setup("chown", 0o6755, 65534)
	asNobody(t, "chgrp", "65534", p)
	if got := mode(p); got != 0o755 {
		t.Errorf("after chgrp by its owner: mode %o, want 755", got)
	}
	// set-group-ID without group execute is a mandatory-locking mark,
	// not a privilege: it stays.
	p = setup("sgid-noexec", 0o2666, 0)
	asNobody(t, "sh", "-c", "echo more >> "+p)
	if got := mode(p); got != 0o2666 {
		t.Errorf("after a write to a set-group-ID file without group execute: mode %o, want 2666", got)
	}
}
