// Package drivetest is the conformance suite of the nodes.Drive contract:
// every kind of drive passes it.
package drivetest

import (
	"errors"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/dhdfs/dhdfs/nodes"
)

// Run checks the drive that open returns, new and empty, and opened again
// (by its location) where the suite says so.
func Run(t *testing.T, open func(t *testing.T) nodes.Drive) {
	t.Run("Identity", func(t *testing.T) { testIdentity(t, open(t)) })
	t.Run("MirrorArea", func(t *testing.T) { testMirrorArea(t, open(t)) })
	t.Run("StoreOutlivesItsOpening", func(t *testing.T) { testStoreOutlives(t, open(t)) })
	t.Run("RetireAndDestroy", func(t *testing.T) { testRetireAndDestroy(t, open(t)) })
}

func reopen(t *testing.T, d nodes.Drive) nodes.Drive {
	t.Helper()
	again, err := nodes.OpenDrive(d.Location())
	if err != nil {
		t.Fatalf("open %s again: %v", d.Location(), err)
	}
	return again
}

var testID = nodes.Identity{PoolID: "p", DriveID: "d", HomeID: "h", Created: time.Now().UTC().Truncate(time.Second)}

func testIdentity(t *testing.T, d nodes.Drive) {
	if _, err := d.Identity(); !errors.Is(err, nodes.ErrNotDrive) {
		t.Fatalf("identity of a new drive: %v, want ErrNotDrive", err)
	}
	if err := d.SetIdentity(testID); err != nil {
		t.Fatal(err)
	}
	got, err := reopen(t, d).Identity()
	if err != nil || got.PoolID != "p" || got.DriveID != "d" || got.HomeID != "h" || !got.Created.Equal(testID.Created) {
		t.Fatalf("identity read back: %+v %v", got, err)
	}
	if dom, err := d.FailureDomain(); err != nil || dom == "" {
		t.Fatalf("failure domain: %q %v", dom, err)
	}
	if free, total, err := d.Space(); err != nil || free <= 0 || total < free {
		t.Fatalf("space: %d of %d, %v", free, total, err)
	}
}

func testMirrorArea(t *testing.T, d nodes.Drive) {
	area := d.Mirror()
	if names, err := area.List(); err != nil || len(names) != 0 {
		t.Fatalf("a new mirror area lists %q, %v", names, err)
	}
	if _, err := area.Read("a"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("read of a missing file: %v, want os.ErrNotExist", err)
	}
	data := []byte("data b")
	for _, name := range []string{"b", "a"} {
		if err := area.Write(name, data); err != nil {
			t.Fatal(err)
		}
	}
	data[0] = 'X' // the area keeps its own copy
	area = reopen(t, d).Mirror()
	if names, err := area.List(); err != nil || !slices.Equal(names, []string{"a", "b"}) {
		t.Fatalf("mirror area lists %q, %v", names, err)
	}
	if b, err := area.Read("b"); err != nil || string(b) != "data b" {
		t.Fatalf("read back %q, %v", b, err)
	}
	if err := area.Write("b", []byte("new")); err != nil {
		t.Fatal(err)
	}
	if b, err := area.Read("b"); err != nil || string(b) != "new" {
		t.Fatalf("read back a replaced file: %q, %v", b, err)
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
	if _, err := area.ModTime("a"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("modification time of a removed file: %v", err)
	}
}

var chunk = []byte("a chunk the drive keeps")

func putChunk(t *testing.T, d nodes.Drive) {
	t.Helper()
	s, err := d.OpenStore(nodes.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(nodes.SumChunk(chunk), chunk); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func hasChunk(t *testing.T, d nodes.Drive) bool {
	t.Helper()
	s, err := d.OpenStore(nodes.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ok, err := s.Has(nodes.SumChunk(chunk))
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func testStoreOutlives(t *testing.T, d nodes.Drive) {
	putChunk(t, d)
	if !hasChunk(t, reopen(t, d)) {
		t.Fatal("a chunk put before the store closed is gone when it opens again")
	}
}

func testRetireAndDestroy(t *testing.T, d nodes.Drive) {
	if err := d.SetIdentity(testID); err != nil {
		t.Fatal(err)
	}
	putChunk(t, d)
	if err := d.Retire(); err != nil {
		t.Fatal(err)
	}
	if _, err := reopen(t, d).Identity(); !errors.Is(err, nodes.ErrNotDrive) {
		t.Fatalf("a retired drive still has an identity: %v", err)
	}
	if !hasChunk(t, d) {
		t.Fatal("retiring a drive lost its chunks")
	}
	if err := d.SetIdentity(testID); err != nil {
		t.Fatal(err)
	}
	if err := d.Destroy(); err != nil {
		t.Fatal(err)
	}
	again := reopen(t, d)
	if _, err := again.Identity(); !errors.Is(err, nodes.ErrNotDrive) {
		t.Fatalf("a destroyed drive still has an identity: %v", err)
	}
	if hasChunk(t, again) {
		t.Fatal("a destroyed drive still holds its chunks")
	}
}
