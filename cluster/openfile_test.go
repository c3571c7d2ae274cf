package cluster

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

func TestOpenFileWriteBack(t *testing.T) {
	tp := newTestPool(t, 3, 2)
	ctx := context.Background()
	n, f := tp.createOpen("f")
	data := randBytes(31, 40*MinChunkSize+3) // more than commitEvery chunks
	for off := 0; off < len(data); off += 100000 {
		if _, err := f.WriteAt(ctx, data[off:min(off+100000, len(data))], int64(off)); err != nil {
			t.Fatal(err)
		}
	}
	// Unflushed, yet visible to GetAttr and to reads through the manager.
	if a, _ := tp.GetAttr(n.Ino); a.Size != int64(len(data)) {
		t.Fatalf("size before flush = %d", a.Size)
	}
	got := make([]byte, len(data))
	if k, err := tp.ReadAt(ctx, n.Ino, got, 0); k != len(data) || (err != nil && err != io.EOF) || !bytes.Equal(got, data) {
		t.Fatalf("read before flush: %d %v", k, err)
	}
	if err := f.Close(ctx); err != nil {
		t.Fatal(err)
	}
	tp.reopen()
	tp.mustEqual("/f", data)
}

// The pool-wide write-buffer limit is soft: files holding every buffer
// while idle delay another writer, never block it for good.
func TestWriteBufferLimit(t *testing.T) {
	tp := newTestPool(t, 2, 2)
	tp.Close()
	m, err := Open(tp.home, Options{WriteBufferBytes: 2 * MinChunkSize})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	var files []*File
	for i := 0; i < 4; i++ {
		n, err := m.Mknod(RootIno, fmt.Sprint("f", i), syscall.S_IFREG|0o644, Caller{}, "")
		if err != nil {
			t.Fatal(err)
		}
		f, err := m.OpenFile(n.Ino)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
		// A partial chunk stays dirty: this file keeps its buffer.
		if _, err := f.WriteAt(ctx, []byte(fmt.Sprint("file ", i)), 0); err != nil {
			t.Fatal(err)
		}
	}
	for i, f := range files {
		if err := f.Close(ctx); err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if _, err := m.GetFile(ctx, fmt.Sprint("/f", i), &b); err != nil || b.String() != fmt.Sprint("file ", i) {
			t.Fatalf("f%d = %q, %v", i, b.String(), err)
		}
	}
	if len(m.bufTokens) != 0 || m.bufOverdraft.Load() != 0 {
		t.Fatalf("buffers leaked: %d tokens, %d overdraft", len(m.bufTokens), m.bufOverdraft.Load())
	}
}

// When close syncs depends on Options.SyncInterval; fsync always syncs,
// including data a lazy close committed earlier.
func TestCloseAndFsyncDurability(t *testing.T) {
	onDisk(t) // durability across a restart
	for _, tc := range []struct {
		name       string
		interval   time.Duration
		closeSyncs bool
	}{
		{"sync every close", 0, true},
		{"background sync", time.Hour, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := newTestPoolWith(t, 3, 2, MinChunkSize, Options{SyncInterval: tc.interval})
			ctx := context.Background()
			n, err := tp.Mknod(RootIno, "f", syscall.S_IFREG|0o644, Caller{}, "")
			if err != nil {
				t.Fatal(err)
			}
			data := randBytes(7, 3*MinChunkSize+5)
			before := tp.metaSyncs()
			f, err := tp.OpenFile(n.Ino)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt(ctx, data, 0); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(ctx); err != nil {
				t.Fatal(err)
			}
			synced := tp.metaSyncs() > before
			if synced != tc.closeSyncs || tp.pendingSync() == tc.closeSyncs {
				t.Fatalf("after close: a sync round %v, pending sync %v", synced, tp.pendingSync())
			}
			tp.mustEqual("/f", data) // committed either way

			// A later fsync of an unchanged file still syncs what its lazy close left.
			before = tp.metaSyncs()
			f, err = tp.OpenFile(n.Ino)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Fsync(ctx); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if synced := tp.metaSyncs() > before; !synced || tp.pendingSync() {
				t.Fatalf("after fsync: a sync round %v, pending sync %v", synced, tp.pendingSync())
			}
			tp.reopen()
			tp.mustEqual("/f", data)
		})
	}
}

// The background syncer syncs what lazy closes committed.
func TestBackgroundSync(t *testing.T) {
	tp := newTestPoolWith(t, 2, 2, MinChunkSize, Options{SyncInterval: 20 * time.Millisecond})
	tp.put("/a", randBytes(8, 2*MinChunkSize))
	ctx := context.Background()
	_, f := tp.createOpen("b")
	if _, err := f.WriteAt(ctx, randBytes(9, MinChunkSize), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for tp.pendingSync() {
		if time.Now().After(deadline) {
			t.Fatal("background sync did not run")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Sequential readers get the chunks ahead fetched in the background, also
// when the kernel's whole-chunk requests arrive out of order; random
// readers do not.
func TestSequentialReadAhead(t *testing.T) {
	const cs = 1 << 20
	const chunks = 10
	for _, tc := range []struct {
		name  string
		reads []int64 // offsets of reads of length size
		size  int
		ahead bool
	}{
		{"in order, 128 KiB windows", []int64{0, 128 << 10, 256 << 10}, 128 << 10, true},
		{"whole chunks out of order", []int64{0, 2 * cs, 1 * cs}, cs, true},
		{"whole chunks in order", []int64{0, cs, 2 * cs}, cs, true},
		{"random whole chunks", []int64{0, 5 * cs, 2 * cs}, cs, false},
		{"random small reads", []int64{0, 4 * cs, 8 * cs}, 4096, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := newTestPoolTB(t, 2, 2, cs)
			in := tp.put("/f", randBytes(7, chunks*cs))
			tp.reopen() // an empty chunk cache
			f, err := tp.OpenFile(in.Ino)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close(context.Background())
			read := map[int64]bool{}
			buf := make([]byte, tc.size)
			for _, off := range tc.reads {
				if _, err := f.ReadAt(context.Background(), buf, off); err != nil {
					t.Fatal(err)
				}
				read[off/cs] = true
			}
			// The chunks no read touched: read-ahead fetches some of
			// them within moments, or none should appear.
			cached := func() []int64 {
				var got []int64
				for idx := int64(0); idx < chunks; idx++ {
					ref, ok, err := tp.chunkAt(in.Ino, idx)
					if err != nil || !ok {
						t.Fatalf("chunk %d: %v %v", idx, ok, err)
					}
					if !read[idx] && tp.cache.contains(ref.ID) {
						got = append(got, idx)
					}
				}
				return got
			}
			deadline := time.Now().Add(2 * time.Second)
			for len(cached()) == 0 && tc.ahead && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if !tc.ahead {
				time.Sleep(200 * time.Millisecond)
			}
			if got := cached(); (len(got) > 0) != tc.ahead {
				t.Fatalf("chunks fetched ahead: %v, want some: %v", got, tc.ahead)
			}
		})
	}
}

// ReadShared returns the bytes ReadAt would, sharing the chunk cache's
// slices for committed data and copying buffered writes and holes.
func TestReadShared(t *testing.T) {
	const cs = MinChunkSize
	tp := newTestPoolTB(t, 2, 2, cs)
	ctx := context.Background()
	data := randBytes(3, 5*cs+100)
	in := tp.put("/f", data)
	// A hole: chunk 6 and 7 are never written; the file ends in chunk 8.
	f, err := tp.OpenFile(in.Ino)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close(ctx)
	tail := randBytes(4, 500)
	if _, err := f.WriteAt(ctx, tail, 8*cs); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 8*cs+len(tail))
	copy(want, data)
	copy(want[8*cs:], tail)

	inside := func(b, p []byte) bool {
		if len(b) == 0 || len(p) == 0 {
			return true
		}
		s, e := &p[0], &p[len(p)-1]
		return uintptr(unsafe.Pointer(&b[0])) >= uintptr(unsafe.Pointer(s)) && uintptr(unsafe.Pointer(&b[0])) <= uintptr(unsafe.Pointer(e))
	}
	check := func(name string, off int64, n int, wantShared bool) {
		t.Helper()
		p := make([]byte, n)
		vec, got, done, err := f.ReadShared(ctx, p, off)
		defer done()
		end := min(int(off)+n, len(want))
		if err != nil && err != io.EOF || got != max(end-int(off), 0) {
			t.Fatalf("%s: read %d, %v; want %d", name, got, err, end-int(off))
		}
		var all []byte
		shared := false
		for _, b := range vec {
			all = append(all, b...)
			shared = shared || !inside(b, p)
		}
		if !bytes.Equal(all, want[off:end]) {
			t.Fatalf("%s: bytes differ", name)
		}
		if shared != wantShared {
			t.Fatalf("%s: shared = %v, want %v", name, shared, wantShared)
		}
	}
	// Buffered writes: copied, never shared.
	check("unflushed", 0, 3*cs, false)
	if err := f.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		off    int64
		n      int
		shared bool
	}{
		{"whole chunk", 0, cs, true},
		{"across chunks", cs / 2, 2 * cs, true},
		{"small inside a chunk", cs + 10, 100, true},
		{"inside a short chunk", 5*cs + 10, 50, true},
		{"from a short chunk into the hole", 5*cs + 50, cs, false}, // zeros past its data: copied
		{"only the hole", 6 * cs, cs, false},
		{"past the end", 8*cs + 400, cs, true},
		{"at the end", int64(len(want)), 10, false},
	} {
		check(tc.name, tc.off, tc.n, tc.shared)
	}
}
