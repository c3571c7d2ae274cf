package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// damagedPool makes a pool with three drives and a few files, and returns
// the content of /docs/a and a function that damages home's meta store
// (restoring it first from a pristine copy): seed picks the bits flipped
// in files matching pattern.
func damagedPool(t *testing.T, e *env) (data []byte, damage func(seed uint64, pattern string)) {
	t.Helper()
	e.ok("init", "--chunk-size", "64KiB")
	e.drives(3)
	src := filepath.Join(e.dir, "a")
	data = randomFile(t, src, 300000, 5)
	e.ok("mkdir", "/docs")
	for i := range 4 {
		e.ok("put", src, fmt.Sprintf("/docs/f%d", i)) // a table per command
	}
	e.ok("put", src, "/docs/a")
	meta := filepath.Join(e.dir, "home", "meta")
	pristine := filepath.Join(e.dir, "meta.pristine")
	if err := os.CopyFS(pristine, os.DirFS(meta)); err != nil {
		t.Fatal(err)
	}
	return data, func(seed uint64, pattern string) {
		t.Helper()
		if err := os.RemoveAll(meta); err != nil {
			t.Fatal(err)
		}
		if err := os.CopyFS(meta, os.DirFS(pristine)); err != nil {
			t.Fatal(err)
		}
		files, _ := filepath.Glob(filepath.Join(meta, pattern))
		slices.Sort(files)
		if len(files) == 0 {
			t.Fatalf("no %s in %s", pattern, meta)
		}
		r := rand.New(rand.NewPCG(seed, 3))
		for range 3 {
			path := files[r.IntN(len(files))]
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b[r.IntN(len(b))] ^= 1 << r.IntN(8)
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// Every command on a pool whose metadata store is damaged fails with one
// line naming the damage and how to restore home: no panic, no stack.
func TestDamagedMetaCLI(t *testing.T) {
	e := newEnv(t)
	_, damage := damagedPool(t, e)
	home := filepath.Join(e.dir, "home")
	hint := "restore it with 'dhdfs recover --from DRIVE --home " + home + " --force'"
	mnt := e.mountDir()
	src := filepath.Join(e.dir, "a")
	commands := [][]string{
		{"status"}, {"fsck"}, {"fsck", "--repair"}, {"ls", "/docs"}, {"stat", "--chunks", "/docs/a"},
		{"get", "/docs/a", filepath.Join(e.dir, "out")}, {"put", src, "/new"}, {"rm", "/docs/a"},
		{"mkdir", "/d"}, {"node", "list"}, {"heal"}, {"scrub"}, {"gc"},
		{"mount", mnt}, {"mount", "--daemon", mnt},
	}
	cases := []struct {
		pattern string
		seed    uint64
	}{
		{"*.sst", 1}, {"*.sst", 2}, {"*.sst", 3}, {"*.sst", 4}, {"MANIFEST", 1}, {"KEYREGISTRY", 2},
	}
	for _, tc := range cases {
		damage(tc.seed, tc.pattern)
		for _, args := range commands {
			_, errs, code := e.run(nil, args...)
			if code == 0 || strings.Count(strings.TrimSpace(errs), "\n") != 0 ||
				!strings.Contains(errs, "metadata store in "+home+" is damaged (") || !strings.HasSuffix(strings.TrimSpace(errs), hint) {
				t.Fatalf("%s damaged (seed %d): dhdfs %s: exit %d, stderr %q; want one line naming the damage and ending %q",
					tc.pattern, tc.seed, strings.Join(args, " "), code, errs, hint)
			}
			if mounted(mnt) {
				t.Fatal("mounted a damaged pool")
			}
		}
	}
}

// recover --force replaces a damaged home, keeping the old metadata aside;
// without --force it refuses and says so.
func TestRecoverForce(t *testing.T) {
	e := newEnv(t)
	data, damage := damagedPool(t, e)
	home := filepath.Join(e.dir, "home")
	disk2 := filepath.Join(e.dir, "disk2")
	damage(7, "*.sst")
	before := dirDigest(t, filepath.Join(home, "meta"))

	_, errs, code := e.run(nil, "recover", "--from", disk2)
	if code == 0 || !strings.Contains(errs, home+": a pool already exists here") || !strings.Contains(errs, "add --force") ||
		strings.Count(strings.TrimSpace(errs), "\n") != 0 {
		t.Fatalf("recover without --force: exit %d, %q", code, errs)
	}
	if dirDigest(t, filepath.Join(home, "meta")) != before {
		t.Fatal("a refused recover changed home")
	}

	out := e.ok("recover", "--from", disk2, "--force")
	aside := movedAside(t, out, home)
	if dirDigest(t, aside) != before {
		t.Fatal("the moved-aside metadata is not the old metadata")
	}
	for _, name := range []string{"pool.json", "mirror.json"} {
		if _, err := os.Stat(filepath.Join(aside, name)); err != nil {
			t.Fatalf("%s was not moved aside with the metadata: %v", name, err)
		}
	}
	if !strings.Contains(out, "Rebuilt pool") || !strings.Contains(out, "0 problems") {
		t.Fatalf("recover --force: %q", out)
	}
	if got := e.ok("ls", "/docs"); got != "a\nf0\nf1\nf2\nf3\n" {
		t.Fatalf("ls after recover: %q", got)
	}
	if got, _, _ := e.run(nil, "get", "/docs/a", "-"); got != string(data) {
		t.Fatal("/docs/a differs after recover")
	}
	e.ok("fsck")

	// A healthy pool can be replaced too; a second aside directory.
	out = e.ok("recover", "--from", filepath.Join(e.dir, "disk1"), "--force")
	if second := movedAside(t, out, home); second == aside {
		t.Fatal("the second recover reused the first aside directory")
	}
	e.ok("fsck")

	// Metadata gone but pool.json still there: refused without --force,
	// rebuilt with it.
	if err := os.RemoveAll(filepath.Join(home, "meta")); err != nil {
		t.Fatal(err)
	}
	e.fails("is damaged", "ls")
	e.fails("add --force", "recover", "--from", disk2)
	movedAside(t, e.ok("recover", "--from", disk2, "--force"), home)
	if got := e.ok("ls", "/docs"); !strings.Contains(got, "f3") {
		t.Fatalf("ls: %q", got)
	}

	// Never a drive of another pool, never under a mount.
	other := newEnv(t)
	other.ok("init")
	otherDisk := other.drives(1)[0]
	before = dirDigest(t, filepath.Join(home, "meta"))
	asides, _ := filepath.Glob(filepath.Join(home, "meta.damaged-*"))
	e.fails("is a drive of pool", "recover", "--from", otherDisk, "--force")
	if dirDigest(t, filepath.Join(home, "meta")) != before {
		t.Fatal("recover --force from another pool's drive changed home")
	}
	mnt := e.mountDaemon()
	e.fails("pool is in use", "recover", "--from", disk2, "--force")
	if got := readFile(t, filepath.Join(mnt, "docs", "a")); got != string(data) {
		t.Fatal("/docs/a differs through the mount after a refused recover")
	}
	e.ok("umount", mnt)
	if now, _ := filepath.Glob(filepath.Join(home, "meta.damaged-*")); len(now) != len(asides) {
		t.Fatalf("a refused recover --force moved metadata aside: %v", now)
	}
	e.ok("fsck")
}

// movedAside returns the directory recover's output says it moved home's
// old metadata to, after checking it is in home and exists.
func movedAside(t *testing.T, out, home string) string {
	t.Helper()
	prefix := "Moved the old metadata of " + home + " aside to "
	line, _, _ := strings.Cut(out, "\n")
	dir, ok := strings.CutPrefix(line, prefix)
	dir = strings.TrimSuffix(dir, ".")
	if !ok || !strings.HasPrefix(dir, filepath.Join(home, "meta.damaged-")) {
		t.Fatalf("recover --force said %q, want %q...", out, prefix)
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		t.Fatalf("%s: %v", dir, err)
	}
	return dir
}

// dirDigest describes the Badger files of dir: names and contents.
func dirDigest(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".sst") && name != "MANIFEST" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s %x\n", name, sum(data))
	}
	return b.String()
}
