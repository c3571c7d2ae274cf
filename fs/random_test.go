package fs

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// TestRandomOps applies thousands of random writes, truncates, reads,
// syncs and reopens to one file through the mount and to a reference file
// in a plain directory, and compares the whole file after every step.
func TestRandomOps(t *testing.T) {
	steps := 3000
	if testing.Short() {
		steps = 500
	}
	tm := mountPool(t, 3, cs)
	ref := filepath.Join(t.TempDir(), "ref")
	open := func(p string) *os.File {
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	a, b := open(tm.path("f")), open(ref)
	a2 := open(tm.path("f")) // a second handle on the same file
	defer func() { a.Close(); a2.Close(); b.Close() }()
	r := rand.New(rand.NewPCG(20261124, 1))
	maxSize := int64(4*cs + cs/3)
	for step := 0; step < steps; step++ {
		var op string
		switch k := r.IntN(100); {
		case k < 55:
			off := r.Int64N(maxSize)
			n := 1 + r.IntN(int(min(maxSize-off, 2*cs)))
			data := make([]byte, n)
			for i := range data {
				data[i] = byte(r.Uint32())
			}
			op = fmt.Sprintf("write %d@%d", n, off)
			h := a
			if r.IntN(2) == 0 {
				h = a2
			}
			if _, err := h.WriteAt(data, off); err != nil {
				t.Fatalf("step %d %s: %v", step, op, err)
			}
			b.WriteAt(data, off)
		case k < 70:
			size := r.Int64N(maxSize)
			op = fmt.Sprintf("truncate %d", size)
			if err := a.Truncate(size); err != nil {
				t.Fatalf("step %d %s: %v", step, op, err)
			}
			b.Truncate(size)
		case k < 85:
			off, n := r.Int64N(maxSize), 1+r.IntN(cs)
			op = fmt.Sprintf("read %d@%d", n, off)
			got, want := make([]byte, n), make([]byte, n)
			gn, gerr := a2.ReadAt(got, off)
			wn, werr := b.ReadAt(want, off)
			if gn != wn || (gerr == io.EOF) != (werr == io.EOF) || !bytes.Equal(got[:gn], want[:wn]) {
				t.Fatalf("step %d %s: got %d bytes (%v), want %d (%v)", step, op, gn, gerr, wn, werr)
			}
		case k < 93:
			op = "fsync"
			if err := a.Sync(); err != nil {
				t.Fatalf("step %d fsync: %v", step, err)
			}
		default:
			op = "reopen"
			if err := a.Close(); err != nil {
				t.Fatalf("step %d close: %v", step, err)
			}
			a = open(tm.path("f"))
		}
		got, err := os.ReadFile(tm.path("f"))
		if err != nil {
			t.Fatalf("step %d after %s: %v", step, op, err)
		}
		want, _ := os.ReadFile(ref)
		if !bytes.Equal(got, want) {
			i := 0
			for i < len(got) && i < len(want) && got[i] == want[i] {
				i++
			}
			t.Fatalf("step %d after %s: %d bytes, want %d; first difference at %d", step, op, len(got), len(want), i)
		}
	}
}
