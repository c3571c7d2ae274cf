package nodes_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/dhdfs/dhdfs/nodes"
)

// A directory drive opens from a path or a dir:// URL and owns what it
// keeps: identity, store, mirror area, and their destruction.
func TestDirDrive(t *testing.T) {
	dir := t.TempDir()
	for _, loc := range []string{dir, "dir://" + dir} {
		d, err := nodes.OpenDrive(loc)
		if err != nil || d.Location() != dir {
			t.Fatalf("OpenDrive(%q): %v %v", loc, d, err)
		}
	}
	for _, bad := range []string{"relative/path", "nosuch://x", ""} {
		if _, err := nodes.OpenDrive(bad); err == nil {
			t.Errorf("OpenDrive(%q) succeeded", bad)
		}
	}
	d, _ := nodes.OpenDrive(dir)
	if _, err := d.Identity(); !errors.Is(err, nodes.ErrNotDrive) {
		t.Fatalf("identity of an empty directory: %v", err)
	}
	id := nodes.Identity{PoolID: "p", DriveID: "d", HomeID: "h", Created: time.Now().UTC().Truncate(time.Second)}
	if err := d.SetIdentity(id); err != nil {
		t.Fatal(err)
	}
	if got, err := d.Identity(); err != nil || got.PoolID != "p" || got.DriveID != "d" || got.HomeID != "h" {
		t.Fatalf("identity read back: %+v %v", got, err)
	}
	if dom, err := d.FailureDomain(); err != nil || dom == "" {
		t.Fatalf("failure domain: %q %v", dom, err)
	}
	if free, total, err := d.Space(); err != nil || free <= 0 || total < free {
		t.Fatalf("space: %d of %d, %v", free, total, err)
	}

	area := d.Mirror()
	if names, err := area.List(); err != nil || len(names) != 0 {
		t.Fatalf("a new mirror area lists %q, %v", names, err)
	}
	for _, name := range []string{"b", "a"} {
		if err := area.Write(name, []byte("data "+name)); err != nil {
			t.Fatal(err)
		}
	}
	if names, err := area.List(); err != nil || !slices.Equal(names, []string{"a", "b"}) {
		t.Fatalf("mirror area lists %q, %v", names, err)
	}
	if b, err := area.Read("b"); err != nil || string(b) != "data b" {
		t.Fatalf("read back %q, %v", b, err)
	}
	if mt, err := area.ModTime("a"); err != nil || time.Since(mt) > time.Minute {
		t.Fatalf("modification time %v, %v", mt, err)
	}
	if err := area.Remove("a"); err != nil || area.Remove("a") != nil {
		t.Fatalf("remove: %v", err)
	}
	if _, err := area.Read("a"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("read of a removed file: %v", err)
	}

	s, err := d.OpenStore(nodes.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := d.Retire(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Identity(); !errors.Is(err, nodes.ErrNotDrive) {
		t.Fatalf("a retired drive still has an identity: %v", err)
	}
	if err := d.SetIdentity(id); err != nil {
		t.Fatal(err)
	}
	if err := d.Destroy(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Identity(); !errors.Is(err, nodes.ErrNotDrive) {
		t.Fatalf("a destroyed drive still has an identity: %v", err)
	}
	for _, sub := range nodes.StoreDirs(dir) {
		if _, err := os.Stat(sub); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("a destroyed drive keeps %s", filepath.Base(sub))
		}
	}
}
