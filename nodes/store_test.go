package nodes_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dhdfs/dhdfs/nodes"
	"github.com/dhdfs/dhdfs/nodes/storetest"
)

func TestMemStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) nodes.Store { return nodes.NewMemStore(1 << 30) })
}

// The deadline wrapper keeps the contract of the store it wraps.
func TestTimeoutStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) nodes.Store { return nodes.WithTimeout(nodes.NewMemStore(1<<30), 10*time.Second) })
}

func TestBadgerStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) nodes.Store {
		s, err := nodes.OpenBadger(t.TempDir(), nodes.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestBadgerStorePersists(t *testing.T) {
	dir := t.TempDir()
	s, err := nodes.OpenBadger(dir, nodes.Options{})
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
	s, err = nodes.OpenBadger(dir, nodes.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Get(id, nil)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after reopen: %v", err)
	}
}

func TestIdentity(t *testing.T) {
	dir := t.TempDir()
	if _, err := nodes.ReadIdentity(dir); !errors.Is(err, nodes.ErrNotDrive) {
		t.Fatalf("ReadIdentity of empty dir: %v, want ErrNotDrive", err)
	}
	want := nodes.Identity{PoolID: nodes.NewID(), DriveID: nodes.NewID()}
	if err := nodes.WriteIdentity(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := nodes.ReadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.PoolID != want.PoolID || got.DriveID != want.DriveID {
		t.Fatalf("identity round trip: got %+v want %+v", got, want)
	}

	tests := []struct{ name, content string }{
		{"garbage", "not json"},
		{"empty ids", `{"format":1}`},
		{"future format", `{"format":99,"pool_id":"a","drive_id":"b"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			if err := os.WriteFile(d+"/"+nodes.IdentityFile, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := nodes.ReadIdentity(d); err == nil {
				t.Fatal("ReadIdentity accepted a bad identity file")
			}
		})
	}
}

func TestParseChunkID(t *testing.T) {
	id := nodes.SumChunk([]byte("x"))
	got, err := nodes.ParseChunkID(id.String())
	if err != nil || got != id {
		t.Fatalf("round trip: %v", err)
	}
	for _, bad := range []string{"", "zz", id.String()[:10]} {
		if _, err := nodes.ParseChunkID(bad); err == nil {
			t.Errorf("ParseChunkID(%q) accepted", bad)
		}
	}
}

func TestFaultyPassesThrough(t *testing.T) {
	storetest.Run(t, func(t *testing.T) nodes.Store { return nodes.NewFaulty(nodes.NewMemStore(1 << 30)) })
}

func TestFaultyInjects(t *testing.T) {
	f := nodes.NewFaulty(nodes.NewMemStore(1 << 30))
	data := []byte("hello chunk")
	id := nodes.SumChunk(data)
	if err := f.Put(id, data); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	tests := []struct {
		name   string
		faults nodes.Faults
		check  func() error
	}{
		{"read error", nodes.Faults{ReadErr: boom}, func() error { _, err := f.Get(id, nil); return err }},
		{"write error", nodes.Faults{WriteErr: boom}, func() error { return f.Put(id, data) }},
		{"sync error", nodes.Faults{WriteErr: boom}, func() error { return f.Sync() }},
		{"corrupt", nodes.Faults{Corrupt: true}, func() error {
			b, err := f.Get(id, nil)
			if err == nil && bytes.Equal(b, data) {
				return nil
			}
			return boom
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.Set(tc.faults)
			defer f.Set(nodes.Faults{})
			if err := tc.check(); !errors.Is(err, boom) {
				t.Fatalf("fault not injected: %v", err)
			}
		})
	}
}

func TestBadgerCollectGarbage(t *testing.T) {
	s, err := nodes.OpenBadger(t.TempDir(), nodes.Options{})
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
	s, err := nodes.OpenBadger(dir, nodes.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if f := format(); f != 1 {
		t.Fatalf("format %d after an open without writes, want 1", f)
	}
	s, err = nodes.OpenBadger(dir, nodes.Options{})
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
