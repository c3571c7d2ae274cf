package fs

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Ordinary tools in child processes against the mount: cp, cat, cmp, tar.
// (They run as separate processes; the test process itself never execs or
// maps files inside its own mount, which could deadlock it.)
func TestTools(t *testing.T) {
	tm := mountPool(t, 3, cs)
	src := t.TempDir()
	files := map[string][]byte{
		"a.bin":          randData(1, 3*cs+5),
		"dir/b.txt":      []byte("hello\n"),
		"dir/sub/c.bin":  randData(2, cs),
		"dir/sub/empty":  nil,
		"photos/big.jpg": randData(3, 20*cs+123),
	}
	for name, data := range files {
		p := filepath.Join(src, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	runTool(t, "cp", "-r", src+"/.", tm.mnt)
	for name, data := range files {
		runTool(t, "cmp", filepath.Join(src, name), tm.path(name))
		if got := runTool(t, "cat", tm.path(name)); got != string(data) {
			t.Fatalf("cat %s differs", name)
		}
	}
	// Copy out again with cp -p (times preserved) and compare.
	out := t.TempDir()
	runTool(t, "cp", "-rp", tm.path("photos"), out)
	runTool(t, "cmp", filepath.Join(src, "photos/big.jpg"), filepath.Join(out, "photos/big.jpg"))
	st1, _ := os.Stat(tm.path("photos/big.jpg"))
	st2, _ := os.Stat(filepath.Join(out, "photos/big.jpg"))
	if !st1.ModTime().Equal(st2.ModTime()) {
		t.Fatalf("cp -p out of the mount: mtime %v vs %v", st1.ModTime(), st2.ModTime())
	}
	// tar round trip through the mount.
	tarball := filepath.Join(t.TempDir(), "x.tar")
	runTool(t, "tar", "-C", tm.mnt, "-cf", tarball, "dir", "a.bin")
	runTool(t, "mkdir", tm.path("restore"))
	runTool(t, "tar", "-C", tm.path("restore"), "-xf", tarball)
	runTool(t, "diff", "-r", filepath.Join(src, "dir"), tm.path("restore/dir"))
	runTool(t, "cmp", filepath.Join(src, "a.bin"), tm.path("restore/a.bin"))
	// A tar archive written into the mount and listed from it.
	runTool(t, "tar", "-C", src, "-cf", tm.path("archive.tar"), ".")
	if list := runTool(t, "tar", "-tf", tm.path("archive.tar")); !strings.Contains(list, "photos/big.jpg") {
		t.Fatalf("tar -t of an archive in the mount: %q", list)
	}
	var df bytes.Buffer
	cmd := exec.Command("df", "-P", tm.mnt)
	cmd.Stdout = &df
	if err := cmd.Run(); err != nil || !strings.Contains(df.String(), "dhdfs") {
		t.Fatalf("df: %v %q", err, df.String())
	}
}

// runTool runs a program to its end and returns its output, failing the
// test with that output if it fails.
func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
