package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dhdfs/dhdfs/nodes"
)

func TestParseFaults(t *testing.T) {
	tests := []struct {
		spec    string
		want    map[string]nodes.Faults
		wantErr string
	}{
		{"", map[string]nodes.Faults{}, ""},
		{"d1:latency=200ms,capacity=1MiB", map[string]nodes.Faults{"d1": {Latency: 200 * time.Millisecond, Capacity: 1 << 20}}, ""},
		{"d1:hang; d2:flap=2s,corrupt", map[string]nodes.Faults{"d1": {Hang: true}, "d2": {Flap: 2 * time.Second, Corrupt: true}}, ""},
		{"d1", nil, "want DRIVE:FAULT"},
		{"d1:latency=soon", nil, "invalid duration"},
		{"d1:explode", nil, "unknown fault"},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			got, err := parseFaults(tc.spec)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || len(got) != len(tc.want) {
				t.Fatalf("%v, %v", got, err)
			}
			for name, f := range tc.want {
				if g := got[name]; g.Latency != f.Latency || g.Capacity != f.Capacity || g.Hang != f.Hang || g.Flap != f.Flap || g.Corrupt != f.Corrupt {
					t.Fatalf("%s: %+v, want %+v", name, g, f)
				}
			}
		})
	}
}

// Through the mount: a hung drive costs a timeout, not a hung mount.
func TestMountHungDrive(t *testing.T) {
	e := newEnv(t)
	e.ok("init", "--chunk-size", "64KiB")
	e.drives(3)
	mnt := e.mountDaemon("--debug-faults", "d1:hang", "--drive-timeout", "200ms", "--cache-size", "0")
	data := randomFile(t, filepath.Join(e.dir, "src"), 1<<20, 5)
	done := make(chan error, 1)
	go func() {
		err := os.WriteFile(filepath.Join(mnt, "f"), data, 0o644)
		if err == nil {
			var got []byte
			got, err = os.ReadFile(filepath.Join(mnt, "f"))
			if err == nil && !bytes.Equal(got, data) {
				err = errors.New("read back differs")
			}
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the mount hung with its drive")
	}
	if out := e.ok("node", "list"); !strings.Contains(out, "failed") {
		t.Fatalf("node list:\n%s", out)
	}
}

// Through the mount: when every drive is full, the application gets
// ENOSPC and what was written before stays intact.
func TestMountAllDrivesFull(t *testing.T) {
	e := newEnv(t)
	e.ok("init", "--chunk-size", "64KiB")
	e.drives(2)
	mnt := e.mountDaemon("--debug-faults", "d1:capacity=512KiB;d2:capacity=512KiB")
	small := randomFile(t, filepath.Join(e.dir, "small"), 128<<10, 6)
	if err := os.WriteFile(filepath.Join(mnt, "small"), small, 0o644); err != nil {
		t.Fatal(err)
	}
	big := randomFile(t, filepath.Join(e.dir, "big"), 2<<20, 7)
	err := os.WriteFile(filepath.Join(mnt, "big"), big, 0o644)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("writing past every drive's capacity: %v, want ENOSPC", err)
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "small")); err != nil || !bytes.Equal(got, small) {
		t.Fatalf("earlier file after ENOSPC: %v", err)
	}
}
