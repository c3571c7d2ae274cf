package cluster

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"syscall"
	"testing"
	"time"
)

func TestOpenFileWriteBack(t *testing.T) {
	tp := newTestPool(t, 3, 2)
	ctx := context.Background()
	n, err := tp.Mknod(RootIno, "f", syscall.S_IFREG|0o644, Caller{}, "")
	if err != nil {
		t.Fatal(err)
	}
	f, err := tp.OpenFile(n.Ino)
	if err != nil {
		t.Fatal(err)
	}
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
	total := func(m map[string]int64) (n int64) {
		for _, v := range m {
			n += v
		}
		return n
	}
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
			before := total(tp.syncs())
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
			synced := total(tp.syncs()) > before
			if synced != tc.closeSyncs || tp.pendingSync() == tc.closeSyncs {
				t.Fatalf("after close: drives synced %v, pending sync %v", synced, tp.pendingSync())
			}
			tp.mustEqual("/f", data) // committed either way

			// A later fsync of an unchanged file still syncs what its lazy close left.
			before = total(tp.syncs())
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
			if synced := total(tp.syncs()) > before; synced == tc.closeSyncs || tp.pendingSync() {
				t.Fatalf("after fsync: drives synced %v, pending sync %v", synced, tp.pendingSync())
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
	n, err := tp.Mknod(RootIno, "b", syscall.S_IFREG|0o644, Caller{}, "")
	if err != nil {
		t.Fatal(err)
	}
	f, err := tp.OpenFile(n.Ino)
	if err != nil {
		t.Fatal(err)
	}
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
