package fs

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Names are bytes: whatever Linux allows in a name must round-trip, and
// what it does not must fail with the errno a local filesystem gives.
func TestOddNames(t *testing.T) {
	tm := mountPool(t, 2, cs)
	tests := []struct {
		name string
		err  error // nil: must work
	}{
		{"plain", nil},
		{"with space and\ttab", nil},
		{"new\nline", nil},
		{"ünïcödé-名前-😀", nil},
		{"not utf-8 \xff\xfe\x80", nil},
		{"-leading-dash", nil},
		{".hidden", nil},
		{"...", nil},
		{"back\\slash*?[", nil},
		{"\x01\x02\x1f control", nil},
		{strings.Repeat("n", 255), nil},
		{strings.Repeat("é", 127) + "x", nil}, // 255 bytes of 128 characters
		{strings.Repeat("n", 256), syscall.ENAMETOOLONG},
		{strings.Repeat("é", 128), syscall.ENAMETOOLONG}, // 256 bytes
	}
	for i, tc := range tests {
		p := tm.path(tc.name)
		data := []byte{byte(i)}
		err := os.WriteFile(p, data, 0o644)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Fatalf("%q: create: %v, want %v", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: create: %v", tc.name, err)
		}
		if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%q: read back: %v", tc.name, err)
		}
		renamed := tm.path(tc.name[:len(tc.name)/2] + "~")
		if err := os.Rename(p, renamed); err != nil {
			t.Fatalf("%q: rename: %v", tc.name, err)
		}
		if err := os.Rename(renamed, p); err != nil {
			t.Fatalf("%q: rename back: %v", tc.name, err)
		}
	}
	entries, err := os.ReadDir(tm.mnt)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, e := range entries {
		listed[e.Name()] = true
	}
	for _, tc := range tests {
		if tc.err == nil && !listed[tc.name] {
			t.Fatalf("%q missing from readdir", tc.name)
		}
	}
	if err := os.Mkdir(tm.path(strings.Repeat("d", 256)), 0o755); !errors.Is(err, syscall.ENAMETOOLONG) {
		t.Fatalf("mkdir of a 256-byte name: %v", err)
	}
	if err := os.Symlink("x", tm.path(strings.Repeat("s", 256))); !errors.Is(err, syscall.ENAMETOOLONG) {
		t.Fatalf("symlink with a 256-byte name: %v", err)
	}
}

// Deep trees work down to the kernel's limit on path length, which then
// answers ENAMETOOLONG.
func TestDeepPaths(t *testing.T) {
	tm := mountPool(t, 2, cs)
	seg := strings.Repeat("d", 200)
	dir := tm.mnt
	depth := 0
	for len(dir)+len(seg)+1 < 4000 {
		dir = filepath.Join(dir, seg)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatalf("mkdir at depth %d: %v", depth, err)
		}
		depth++
	}
	data := []byte("deep")
	if err := os.WriteFile(filepath.Join(dir, "f"), data, 0o644); err != nil {
		t.Fatalf("file at depth %d: %v", depth, err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "f")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read at depth %d: %v", depth, err)
	}
	if err := os.MkdirAll(filepath.Join(dir, seg, seg), 0o755); !errors.Is(err, syscall.ENAMETOOLONG) {
		t.Fatalf("a path over PATH_MAX: %v", err)
	}
	// Many levels of short names.
	dir = tm.mnt
	for i := 0; i < 300; i++ {
		dir = filepath.Join(dir, "a")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatalf("mkdir at level %d: %v", i, err)
		}
	}
	if err := os.RemoveAll(filepath.Join(tm.mnt, "a")); err != nil {
		t.Fatal(err)
	}
}
