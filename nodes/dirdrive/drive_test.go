package dirdrive_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/dhdfs/dhdfs/nodes"
	"github.com/dhdfs/dhdfs/nodes/dirdrive"
	"github.com/dhdfs/dhdfs/nodes/drivetest"
)

func TestDirDriveConformance(t *testing.T) {
	drivetest.Run(t, func(t *testing.T) nodes.Drive {
		d, err := nodes.OpenDrive(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return d
	})
}

// A directory drive opens from a path or a dir:// URL, and destroying it
// deletes its store's files.
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
	openStore := func() {
		s, err := d.OpenStore(nodes.Options{})
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	openStore() // creates the store's files
	if err := d.Destroy(); err != nil {
		t.Fatal(err)
	}
	for _, sub := range dirdrive.StoreDirs(dir) {
		if _, err := os.Stat(sub); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("a destroyed drive keeps %s", filepath.Base(sub))
		}
	}
}
