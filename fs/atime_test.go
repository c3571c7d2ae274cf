package fs

import (
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dhdfs/dhdfs/cluster"
	"github.com/dhdfs/dhdfs/cluster/mountinfo"
)

// atimeOf returns p's access time. Tests mount with no attribute cache, so
// that it comes from the mount each time.
func atimeOf(t *testing.T, p string) time.Time {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return time.Unix(st.Atim.Unix())
}

// readFile opens p for reading, reads a byte and closes it.
func readFile(t *testing.T, p string) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	f.Read(make([]byte, 1))
	f.Close()
}

// listDir reads p's entries.
func listDir(t *testing.T, p string) {
	t.Helper()
	if _, err := os.ReadDir(p); err != nil {
		t.Fatal(err)
	}
}

// mountOptions returns the options /proc/mounts shows for dir.
func mountOptions(t *testing.T, dir string) []string {
	t.Helper()
	mounts, err := mountinfo.Read()
	if err != nil {
		t.Fatal(err)
	}
	m, ok := mountinfo.At(mounts, dir)
	if !ok {
		t.Fatalf("%s is not mounted", dir)
	}
	return m.Options
}

func hasOption(opts []string, o string) bool {
	for _, x := range opts {
		if x == o {
			return true
		}
	}
	return false
}

// relatime, the default: a read renews the access time when it is not
// newer than the last change; later reads leave it until the next change.
func TestAtimeRelative(t *testing.T) {
	tm := mountPoolWith(t, 2, cs, func(c *Config) { c.Timeout = 0 })
	if opts := mountOptions(t, tm.mnt); !hasOption(opts, "relatime") {
		t.Errorf("mount options %v: no relatime", opts)
	}
	p := tm.path("f")
	if err := os.WriteFile(p, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	created := atimeOf(t, p)
	time.Sleep(10 * time.Millisecond)
	readFile(t, p)
	first := atimeOf(t, p)
	if !first.After(created) {
		t.Fatalf("first read after a write: atime %v, was %v", first, created)
	}
	time.Sleep(10 * time.Millisecond)
	readFile(t, p)
	if again := atimeOf(t, p); !again.Equal(first) {
		t.Fatalf("second read without a change moved atime from %v to %v", first, again)
	}
	// After a change the next read renews it again.
	if err := os.WriteFile(p, []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	readFile(t, p)
	if after := atimeOf(t, p); !after.After(first) {
		t.Fatalf("read after a change: atime %v, was %v", after, first)
	}
	// Opening for writing only is not an access.
	a := atimeOf(t, p)
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if b := atimeOf(t, p); !b.Equal(a) {
		t.Fatalf("open for writing moved atime from %v to %v", a, b)
	}
	// A listing is an access to the directory, once its entries changed.
	d := tm.path("d")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d+"/x", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	before := atimeOf(t, d)
	listDir(t, d)
	if after := atimeOf(t, d); !after.After(before) {
		t.Fatalf("listing after a change: directory atime %v, was %v", after, before)
	}
}

// noatime: reads and listings never change access times; /proc/mounts
// says so.
func TestAtimeNever(t *testing.T) {
	tm := mountPoolWith(t, 2, cs, func(c *Config) { c.Timeout, c.Atime = 0, cluster.AtimeNever })
	if opts := mountOptions(t, tm.mnt); !hasOption(opts, "noatime") {
		t.Errorf("mount options %v: no noatime", opts)
	}
	p := tm.path("f")
	if err := os.WriteFile(p, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	a := atimeOf(t, p)
	readFile(t, p)
	listDir(t, tm.mnt)
	if b := atimeOf(t, p); !b.Equal(a) {
		t.Fatalf("noatime: read moved atime from %v to %v", a, b)
	}
}

// strictatime renews the access time at every open for reading;
// nodiratime leaves directories alone.
func TestAtimeStrictNoDir(t *testing.T) {
	tm := mountPoolWith(t, 2, cs, func(c *Config) {
		c.Timeout, c.Atime, c.NoDirAtime = 0, cluster.AtimeStrict, true
	})
	if opts := mountOptions(t, tm.mnt); !hasOption(opts, "nodiratime") || hasOption(opts, "relatime") {
		t.Errorf("mount options %v: want nodiratime and not relatime", opts)
	}
	p := tm.path("f")
	if err := os.WriteFile(p, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	readFile(t, p)
	a := atimeOf(t, p)
	time.Sleep(10 * time.Millisecond)
	readFile(t, p)
	if b := atimeOf(t, p); !b.After(a) {
		t.Fatalf("strictatime: second read left atime at %v", b)
	}
	d := tm.path("d")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d+"/x", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	before := atimeOf(t, d)
	listDir(t, d)
	if after := atimeOf(t, d); !after.Equal(before) {
		t.Fatalf("nodiratime: listing moved the directory's atime from %v to %v", before, after)
	}
}

// A read-only mount reads and refuses every change with EROFS.
func TestReadOnlyMount(t *testing.T) {
	tm := mountPoolWith(t, 2, cs, func(c *Config) { c.ReadOnly = true })
	if opts := mountOptions(t, tm.mnt); !hasOption(opts, "ro") {
		t.Errorf("mount options %v: no ro", opts)
	}
	// Content written behind the mount's back, through the pool.
	if _, err := tm.m.PutFile(t.Context(), "/f", strings.NewReader("data"), 0o644, cluster.Caller{}); err != nil {
		t.Fatal(err)
	}
	if got := string(mustRead(t, tm.path("f"))); got != "data" {
		t.Fatalf("read on a read-only mount: %q", got)
	}
	before, _ := tm.m.GetAttr(cluster.RootIno)
	for name, call := range map[string]func() error{
		"create":   func() error { return os.WriteFile(tm.path("g"), nil, 0o644) },
		"write":    func() error { return os.WriteFile(tm.path("f"), []byte("x"), 0o644) },
		"mkdir":    func() error { return os.Mkdir(tm.path("d"), 0o755) },
		"unlink":   func() error { return os.Remove(tm.path("f")) },
		"rename":   func() error { return os.Rename(tm.path("f"), tm.path("h")) },
		"chmod":    func() error { return os.Chmod(tm.path("f"), 0o600) },
		"truncate": func() error { return os.Truncate(tm.path("f"), 0) },
		"symlink":  func() error { return os.Symlink("f", tm.path("l")) },
		"link":     func() error { return os.Link(tm.path("f"), tm.path("l")) },
		"setxattr": func() error { return unix.Setxattr(tm.path("f"), "user.a", []byte("1"), 0) },
		"mknod":    func() error { return unix.Mknod(tm.path("p"), syscall.S_IFIFO|0o644, 0) },
		"tmpfile": func() error {
			fd, err := unix.Open(tm.mnt, unix.O_TMPFILE|unix.O_RDWR, 0o600)
			unix.Close(fd)
			return err
		},
		"utimes":    func() error { return os.Chtimes(tm.path("f"), time.Now(), time.Now()) },
		"o_trunc":   func() error { f, err := os.OpenFile(tm.path("f"), os.O_RDONLY|os.O_TRUNC, 0); f.Close(); return err },
		"rmxattr":   func() error { return unix.Removexattr(tm.path("f"), "user.a") },
		"readwrite": func() error { f, err := os.OpenFile(tm.path("f"), os.O_RDWR, 0); f.Close(); return err },
	} {
		if err := call(); !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s on a read-only mount: %v, want EROFS", name, err)
		}
	}
	if after, _ := tm.m.GetAttr(cluster.RootIno); after.Mtime != before.Mtime || after.Atime != before.Atime {
		t.Fatalf("the root changed on a read-only mount")
	}
}

// The daemon refuses changes on a read-only mount by itself too, for a
// mount whose kernel flags were lost (see mountFlagNames).
func TestReadOnlyDaemon(t *testing.T) {
	fsys := &FS{cfg: Config{ReadOnly: true}}
	n := &Node{fs: fsys}
	if errno := n.accessed(syscall.O_RDWR); errno != syscall.EROFS {
		t.Fatalf("open for writing: %v", errno)
	}
	if errno := n.Unlink(t.Context(), "x"); errno != syscall.EROFS {
		t.Fatalf("unlink: %v", errno)
	}
	if _, errno := n.Mkdir(t.Context(), "x", 0o755, nil); errno != syscall.EROFS {
		t.Fatalf("mkdir: %v", errno)
	}
}
