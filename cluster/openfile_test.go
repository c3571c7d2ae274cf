package cluster

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"syscall"
	"testing"
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
