package nodes_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/dhdfs/dhdfs/nodes"
	"github.com/dhdfs/dhdfs/nodes/drivetest"
	"github.com/dhdfs/dhdfs/nodes/storetest"
)

func TestMemStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) nodes.Store { return nodes.NewMemStore(1 << 30) })
}

// The deadline wrapper keeps the contract of the store it wraps.
func TestTimeoutStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) nodes.Store { return nodes.WithTimeout(nodes.NewMemStore(1<<30), 10*time.Second) })
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

func TestMemDrive(t *testing.T) {
	t.Cleanup(func() { nodes.ForgetMemDrives("drivetest/") })
	n := 0
	drivetest.Run(t, func(t *testing.T) nodes.Drive {
		n++
		d, err := nodes.OpenDrive(fmt.Sprintf("mem://drivetest/%d?capacity=%d", n, 1<<30))
		if err != nil {
			t.Fatal(err)
		}
		return d
	})
	for _, bad := range []string{"mem://", "mem://x?capacity=lots"} {
		if _, err := nodes.OpenDrive(bad); err == nil {
			t.Errorf("OpenDrive(%q) succeeded", bad)
		}
	}
}
