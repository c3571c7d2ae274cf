package fs

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// needTools skips the test when a program it runs is missing
// (scripts/test.sh installs the Debian packages pkgs that hold them).
func needTools(t *testing.T, pkgs []string, progs ...string) {
	t.Helper()
	for _, p := range progs {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s is not installed (apt-get install %s)", p, strings.Join(pkgs, " "))
		}
	}
}

// rsync -aHAX into the mount and back out, and cp -a out of it: exit 0,
// attributes copied, and none of the pool's own attributes carried out.
func TestRsyncAndCpXattrs(t *testing.T) {
	needTools(t, []string{"rsync", "attr"}, "rsync", "getfattr")
	tm := mountPool(t, 3, cs)
	src := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, "tree/sub"), 0o755))
	must(os.WriteFile(filepath.Join(src, "tree/a"), randData(1, 3*cs+5), 0o640))
	must(os.WriteFile(filepath.Join(src, "tree/sub/b"), []byte("b"), 0o600))
	must(os.Link(filepath.Join(src, "tree/a"), filepath.Join(src, "tree/sub/a-link")))
	must(os.Symlink("../a", filepath.Join(src, "tree/sub/sym")))
	must(unix.Setxattr(filepath.Join(src, "tree/a"), "user.note", []byte("hello"), 0))
	must(unix.Setxattr(filepath.Join(src, "tree/sub"), "user.dir", []byte("d"), 0))
	// Into the mount, twice: the second run compares attributes of files
	// already there, which is where listing user.dhdfs.* made it fail.
	for range 2 {
		runTool(t, "rsync", "-aHAX", src+"/tree/", tm.path("tree"))
	}
	runTool(t, "rsync", "-aX", src+"/tree/", tm.path("tree2"))
	runTool(t, "diff", "-r", src+"/tree", tm.path("tree"))
	if v := runTool(t, "getfattr", "--absolute-names", "--only-values", "-n", "user.note", tm.path("tree/a")); v != "hello" {
		t.Fatalf("user.note in the mount: %q", v)
	}
	var a, link unix.Stat_t
	must(unix.Stat(tm.path("tree/a"), &a))
	must(unix.Stat(tm.path("tree/sub/a-link"), &link))
	if a.Ino != link.Ino || a.Nlink != 2 {
		t.Fatalf("rsync -H: inodes %d and %d, nlink %d", a.Ino, link.Ino, a.Nlink)
	}
	// The pool's own attributes still answer by name.
	if out := runTool(t, "getfattr", "--absolute-names", "-n", "user.dhdfs.locations", tm.path("tree/a")); !strings.Contains(out, "user.dhdfs.locations") {
		t.Fatalf("getfattr -n user.dhdfs.locations: %q", out)
	}
	// Out of the mount: the copies hold the files' own attributes only.
	out := t.TempDir()
	runTool(t, "cp", "-a", tm.path("tree"), filepath.Join(out, "cp"))
	runTool(t, "rsync", "-aHAX", tm.path("tree")+"/", filepath.Join(out, "rsync"))
	for _, dir := range []string{"cp", "rsync"} {
		dump := runTool(t, "getfattr", "--absolute-names", "-R", "-d", "-m", "-", filepath.Join(out, dir))
		if strings.Contains(dump, "user.dhdfs") {
			t.Fatalf("%s out of the mount copied the pool's attributes:\n%s", dir, dump)
		}
		if !strings.Contains(dump, "user.note") || !strings.Contains(dump, "user.dir") {
			t.Fatalf("%s out of the mount lost the files' attributes:\n%s", dir, dump)
		}
	}
}
