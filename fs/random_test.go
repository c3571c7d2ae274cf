package fs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// modelInode is what a file must contain. Handles and names point at
// inodes, so an unlinked file that is still open is modelled too.
type modelInode struct {
	id   int
	data []byte
}

func (m *modelInode) grow(n int64) {
	if int64(len(m.data)) < n {
		m.data = append(m.data, make([]byte, n-int64(len(m.data)))...)
	}
}

func (m *modelInode) zero(from, to int64) {
	to = min(to, int64(len(m.data)))
	if from < to {
		clear(m.data[from:to])
	}
}

type modelHandle struct {
	f   *os.File
	ino *modelInode
}

// TestRandomModel applies thousands of random operations to a handful of
// files through the mount and to an in-memory model, and compares every
// file the step touched, whole, after every step: writes anywhere (also
// far past the end), truncation down and up, every fallocate mode,
// copy_file_range within and across files, unlink and re-create of the
// same names, rename over another file, reads through a second handle, and
// reopening. Freed write buffers are poisoned, so a byte no write produced
// shows up at once. This is what fsx found the earlier version (one file,
// writes and truncates only) missing.
func TestRandomModel(t *testing.T) {
	steps := 4000
	if testing.Short() {
		steps = 600
	}
	seed := uint64(20261202)
	if s := os.Getenv("DHDFS_MODEL_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (DHDFS_MODEL_SEED)", seed)
	tm := mountPool(t, 3, cs)
	r := rand.New(rand.NewPCG(seed, 7))
	const nameCount = 5
	maxSize := int64(5*cs + cs/3)
	names := map[string]*modelInode{}
	var handles []*modelHandle
	nextID := 0
	defer func() {
		for _, h := range handles {
			h.f.Close()
		}
	}()
	pickName := func() string { return fmt.Sprintf("f%d", r.IntN(nameCount)) }
	open := func(name string, flags int) *modelHandle {
		f, err := os.OpenFile(tm.path(name), flags, 0o644)
		if err != nil {
			t.Fatalf("open %s: %v", name, err)
		}
		ino := names[name]
		if ino == nil {
			nextID++
			ino = &modelInode{id: nextID}
			names[name] = ino
		}
		if flags&os.O_TRUNC != 0 {
			ino.data = ino.data[:0]
		}
		h := &modelHandle{f: f, ino: ino}
		handles = append(handles, h)
		return h
	}
	pickHandle := func() *modelHandle {
		if len(handles) == 0 || r.IntN(8) == 0 {
			return open(pickName(), os.O_RDWR|os.O_CREATE)
		}
		return handles[r.IntN(len(handles))]
	}
	// check compares an inode's whole content, read through another handle
	// on it when there is one, and through its name when it has one.
	check := func(step int, op string, ino *modelInode) {
		t.Helper()
		var readers []*os.File
		for _, h := range handles {
			if h.ino == ino {
				readers = append(readers, h.f)
			}
		}
		if len(readers) > 0 {
			f := readers[r.IntN(len(readers))]
			var st syscall.Stat_t
			if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
				t.Fatalf("step %d after %s: fstat: %v", step, op, err)
			}
			if st.Size != int64(len(ino.data)) {
				t.Fatalf("step %d after %s: inode %d size %d, want %d", step, op, ino.id, st.Size, len(ino.data))
			}
			got := make([]byte, st.Size+100)
			n, err := f.ReadAt(got, 0)
			if err != nil && !errors.Is(err, io.EOF) {
				t.Fatalf("step %d after %s: read: %v", step, op, err)
			}
			compare(t, fmt.Sprintf("step %d after %s: inode %d through a handle", step, op, ino.id), got[:n], ino.data)
		}
		for name, in := range names {
			if in == ino {
				got, err := os.ReadFile(tm.path(name))
				if err != nil {
					t.Fatalf("step %d after %s: read %s: %v", step, op, name, err)
				}
				compare(t, fmt.Sprintf("step %d after %s: %s", step, op, name), got, ino.data)
			}
		}
	}
	for step := 0; step < steps; step++ {
		var op string
		var touched []*modelInode
		switch k := r.IntN(100); {
		case k < 30: // write, often past the end
			h := pickHandle()
			off := r.Int64N(maxSize)
			n := 1 + r.IntN(int(min(maxSize-off, 2*cs)))
			data := randData(r.Uint64(), n)
			op = fmt.Sprintf("write %d@%d to inode %d", n, off, h.ino.id)
			if _, err := h.f.WriteAt(data, off); err != nil {
				t.Fatalf("step %d %s: %v", step, op, err)
			}
			h.ino.grow(off + int64(n))
			copy(h.ino.data[off:], data)
			touched = append(touched, h.ino)
		case k < 40:
			h := pickHandle()
			size := r.Int64N(maxSize)
			op = fmt.Sprintf("truncate inode %d to %d", h.ino.id, size)
			if err := h.f.Truncate(size); err != nil {
				t.Fatalf("step %d %s: %v", step, op, err)
			}
			if size < int64(len(h.ino.data)) {
				h.ino.data = h.ino.data[:size]
			}
			h.ino.grow(size)
			touched = append(touched, h.ino)
		case k < 52:
			h := pickHandle()
			modes := []uint32{0, unix.FALLOC_FL_KEEP_SIZE, unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE,
				unix.FALLOC_FL_ZERO_RANGE, unix.FALLOC_FL_ZERO_RANGE | unix.FALLOC_FL_KEEP_SIZE}
			mode := modes[r.IntN(len(modes))]
			off := r.Int64N(maxSize)
			n := 1 + r.Int64N(min(maxSize-off, 3*cs))
			op = fmt.Sprintf("fallocate mode %#x %d@%d on inode %d", mode, n, off, h.ino.id)
			if err := unix.Fallocate(int(h.f.Fd()), mode, off, n); err != nil {
				t.Fatalf("step %d %s: %v", step, op, err)
			}
			keep := mode&unix.FALLOC_FL_KEEP_SIZE != 0
			if mode&(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_ZERO_RANGE) != 0 {
				h.ino.zero(off, off+n)
			}
			if !keep {
				h.ino.grow(off + n)
			}
			touched = append(touched, h.ino)
		case k < 62:
			src, dst := pickHandle(), pickHandle()
			offIn, offOut := r.Int64N(maxSize), r.Int64N(maxSize)
			n := 1 + r.IntN(int(min(maxSize-offOut, 2*cs)))
			count := max(0, min(int64(n), int64(len(src.ino.data))-offIn))
			if src.ino == dst.ino && offOut+count > offIn && offOut < offIn+count {
				continue // overlapping ranges of one file: EINVAL by definition
			}
			op = fmt.Sprintf("copy_file_range %d@%d of inode %d to %d of inode %d", n, offIn, src.ino.id, offOut, dst.ino.id)
			inPos, outPos := offIn, offOut
			got, err := unix.CopyFileRange(int(src.f.Fd()), &inPos, int(dst.f.Fd()), &outPos, n, 0)
			if err != nil {
				t.Fatalf("step %d %s: %v", step, op, err)
			}
			if int64(got) > count || (count > 0 && got == 0) {
				t.Fatalf("step %d %s: copied %d, want up to %d", step, op, got, count)
			}
			if got > 0 {
				part := bytes.Clone(src.ino.data[offIn : offIn+int64(got)])
				dst.ino.grow(offOut + int64(got))
				copy(dst.ino.data[offOut:], part)
			}
			touched = append(touched, dst.ino)
		case k < 70:
			h := pickHandle()
			op = fmt.Sprintf("fsync inode %d", h.ino.id)
			if err := h.f.Sync(); err != nil {
				t.Fatalf("step %d %s: %v", step, op, err)
			}
			touched = append(touched, h.ino)
		case k < 76: // unlink: open handles keep the inode
			name := pickName()
			ino := names[name]
			if ino == nil {
				continue
			}
			op = fmt.Sprintf("unlink %s (inode %d)", name, ino.id)
			if err := os.Remove(tm.path(name)); err != nil {
				t.Fatalf("step %d %s: %v", step, op, err)
			}
			delete(names, name)
			touched = append(touched, ino)
		case k < 80: // create anew, often over a name just freed
			name := pickName()
			flags := os.O_RDWR | os.O_CREATE
			if r.IntN(2) == 0 {
				flags |= os.O_TRUNC
			}
			op = fmt.Sprintf("open %s flags %#x", name, flags)
			touched = append(touched, open(name, flags).ino)
		case k < 84:
			from, to := pickName(), pickName()
			if names[from] == nil || from == to {
				continue
			}
			op = fmt.Sprintf("rename %s over %s", from, to)
			if err := os.Rename(tm.path(from), tm.path(to)); err != nil {
				t.Fatalf("step %d %s: %v", step, op, err)
			}
			old := names[to]
			names[to] = names[from]
			delete(names, from)
			touched = append(touched, names[to])
			if old != nil {
				touched = append(touched, old)
			}
		case k < 92: // close a handle, and open the file again by name
			if len(handles) == 0 {
				continue
			}
			i := r.IntN(len(handles))
			h := handles[i]
			op = fmt.Sprintf("close inode %d", h.ino.id)
			if err := h.f.Close(); err != nil {
				t.Fatalf("step %d %s: %v", step, op, err)
			}
			handles = append(handles[:i], handles[i+1:]...)
			for name, ino := range names {
				if ino == h.ino {
					touched = append(touched, open(name, os.O_RDWR).ino)
					break
				}
			}
		default: // a read of a piece through any handle
			h := pickHandle()
			off, n := r.Int64N(maxSize), 1+r.IntN(2*cs)
			op = fmt.Sprintf("read %d@%d of inode %d", n, off, h.ino.id)
			got := make([]byte, n)
			gn, err := h.f.ReadAt(got, off)
			if err != nil && !errors.Is(err, io.EOF) {
				t.Fatalf("step %d %s: %v", step, op, err)
			}
			var want []byte
			if off < int64(len(h.ino.data)) {
				want = h.ino.data[off:min(off+int64(n), int64(len(h.ino.data)))]
			}
			compare(t, fmt.Sprintf("step %d %s", step, op), got[:gn], want)
		}
		for _, ino := range touched {
			check(step, op, ino)
		}
	}
	// Every file once more after closing everything: committed, from the
	// pool rather than from buffers.
	for _, h := range handles {
		if err := h.f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	handles = nil
	for _, ino := range names {
		check(steps, "closing everything", ino)
	}
	// And the bookkeeping behind them: references, stored bytes, copies.
	for name := range names {
		if err := os.Remove(tm.path(name)); err != nil {
			t.Fatal(err)
		}
	}
	unmount(t, tm.srv)
	rep, err := tm.m.Fsck(context.Background(), false, nil)
	if err != nil || len(rep.Problems) > 0 {
		t.Fatalf("fsck after the run: %v, %+v", err, rep.Problems)
	}
}

// compare fails with the first differing offset and what is there.
func compare(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	end := i
	for end < len(got) && end < len(want) && got[end] != want[end] {
		end++
	}
	g, w := got[i:min(i+8, len(got))], want[i:min(i+8, len(want))]
	t.Fatalf("%s: %d bytes, want %d; they differ from %d to %d: % x, want % x", what, len(got), len(want), i, end, g, w)
}
