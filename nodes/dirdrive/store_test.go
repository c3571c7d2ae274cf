package dirdrive_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/dhdfs/dhdfs/nodes"
	"github.com/dhdfs/dhdfs/nodes/dirdrive"
	"github.com/dhdfs/dhdfs/nodes/storetest"
)

func TestBadgerStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) nodes.Store {
		s, err := dirdrive.OpenBadger(t.TempDir(), nodes.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestBadgerStorePersists(t *testing.T) {
	dir := t.TempDir()
	s, err := dirdrive.OpenBadger(dir, nodes.Options{})
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("persist"), 1000)
	id := nodes.SumChunk(data)
	if err := s.Put(id, data); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = dirdrive.OpenBadger(dir, nodes.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Get(id, nil)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after reopen: %v", err)
	}
}

func TestBadgerCollectGarbage(t *testing.T) {
	s, err := dirdrive.OpenBadger(t.TempDir(), nodes.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var ids []nodes.ChunkID
	for i := 0; i < 300; i++ {
		data := bytes.Repeat([]byte{byte(i), byte(i >> 8), 7}, 1<<20/3)
		id := nodes.SumChunk(data)
		if err := s.Put(id, data); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	keep := ids[0]
	for _, id := range ids[1:] {
		if err := s.Delete(id); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := s.Usage()
	if err := s.CollectGarbage(); err != nil {
		t.Fatal(err)
	}
	after, _ := s.Usage()
	t.Logf("store used %d MiB before GC, %d MiB after", before.Used>>20, after.Used>>20)
	if after.Used > before.Used/4 {
		t.Fatalf("GC left %d of %d bytes", after.Used, before.Used)
	}
	if _, err := s.Get(keep, nil); err != nil {
		t.Fatalf("a live chunk is gone after GC: %v", err)
	}
}

// A drive written before packs (identity format 1) is read as it is, and
// marked format 2 at its first change, so that an older dhdfs refuses it
// rather than read pack locations as chunks; opening it only to read
// leaves it as it was.
func TestIdentityUpgradedAtFirstWrite(t *testing.T) {
	dir := t.TempDir()
	old := `{"format":1,"pool_id":"p","drive_id":"d"}`
	if err := os.WriteFile(filepath.Join(dir, nodes.IdentityFile), []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	format := func() int {
		t.Helper()
		id, err := nodes.ReadIdentity(dir)
		if err != nil {
			t.Fatal(err)
		}
		return id.Format
	}
	s, err := dirdrive.OpenBadger(dir, nodes.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if f := format(); f != 1 {
		t.Fatalf("format %d after an open without writes, want 1", f)
	}
	s, err = dirdrive.OpenBadger(dir, nodes.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	data := bytes.Repeat([]byte("x"), 8<<10)
	if err := s.Put(nodes.SumChunk(data), data); err != nil {
		t.Fatal(err)
	}
	if f := format(); f != 2 {
		t.Fatalf("format %d after a write, want 2", f)
	}
	if id, _ := nodes.ReadIdentity(dir); id.PoolID != "p" || id.DriveID != "d" {
		t.Fatalf("ids changed: %+v", id)
	}
}
