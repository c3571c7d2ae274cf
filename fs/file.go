package fs

import (
	"context"
	"errors"
	"io"
	"math"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// handle is an open file. All handles on one inode share its File,
// so they see each other's writes.
type handle struct {
	f  File
	fs *FS
}

// Open implements gofs.NodeOpener. The kernel may keep its page cache
// across opens (FOPEN_KEEP_CACHE): every change to file content goes
// through this mount, so the kernel's cache is never stale.
func (n *Node) Open(ctx context.Context, flags uint32) (_ gofs.FileHandle, _ uint32, errno syscall.Errno) {
	defer n.fs.observe("open", time.Now(), &errno)
	if errno := n.accessed(flags); errno != 0 { // read-only mount, access time (mount_options.go)
		return nil, 0, errno
	}
	f, err := n.fs.m.OpenFile(n.ino())
	if err != nil {
		return nil, 0, n.errno("open", err)
	}
	if flags&syscall.O_TRUNC != 0 && f.Size() > 0 {
		if err := f.Truncate(ctx, 0); err != nil {
			f.Close(ctx)
			return nil, 0, n.errno("open", err)
		}
	}
	return &handle{f: f, fs: n.fs}, fuse.FOPEN_KEEP_CACHE, 0
}

func (h *handle) errno(op string, err error) syscall.Errno { return errnoOf(h.fs.log, op, err) }

// Read implements gofs.FileReader.
func (h *handle) Read(ctx context.Context, dest []byte, off int64) (_ fuse.ReadResult, errno syscall.Errno) {
	defer h.fs.observe("read", time.Now(), &errno)
	// Cached chunks go to the kernel as they are, in one writev, without
	// a copy into dest.
	vec, _, done, err := h.f.ReadShared(ctx, dest, off)
	if err != nil && !errors.Is(err, io.EOF) {
		done()
		return nil, h.errno("read", err)
	}
	return &sharedRead{vec: vec, done: done}, 0
}

// sharedRead is a read's reply made of slices of the pool's buffers.
// go-fuse writes them to the kernel in one writev (Slices) and calls Done
// once it has, or once it has given up sending them, which gives the
// buffers back to the pool. A reply never sent (the request interrupted)
// never calls Done: its buffers are then left to Go's collector, never
// recycled under a reader.
type sharedRead struct {
	vec  [][]byte
	done func()
}

func (r *sharedRead) Size() int {
	n := 0
	for _, v := range r.vec {
		n += len(v)
	}
	return n
}

// Bytes joins the slices in buf, for a kernel write path that cannot take
// them as they are.
func (r *sharedRead) Bytes(buf []byte) ([]byte, fuse.Status) {
	buf = buf[:0]
	for _, v := range r.vec {
		buf = append(buf, v...)
	}
	return buf, fuse.OK
}

// Slices lets go-fuse write the slices without joining them.
func (r *sharedRead) Slices() ([][]byte, fuse.Status) { return r.vec, fuse.OK }

func (r *sharedRead) Done() { r.done() }

// Write implements gofs.FileWriter.
func (h *handle) Write(ctx context.Context, data []byte, off int64) (_ uint32, errno syscall.Errno) {
	defer h.fs.observe("write", time.Now(), &errno)
	n, err := h.f.WriteAt(ctx, data, off)
	if err != nil {
		return uint32(n), h.errno("write", err)
	}
	return uint32(n), 0
}

// Flush implements gofs.FileFlusher. It runs at every close(2): the
// writes are committed (visible to a remounted pool, durable once the pool
// next syncs, or at once when mounted with --sync-every 0), and a write
// error is reported to close.
func (h *handle) Flush(ctx context.Context) (errno syscall.Errno) {
	defer h.fs.observe("flush", time.Now(), &errno)
	return h.errno("flush", h.f.Flush(ctx))
}

// Fsync implements gofs.NodeFsyncer, for files and directories alike: a
// file's writes are committed and everything is synced to disk, so a
// rename or create made durable by fsync on its directory stays.
func (n *Node) Fsync(ctx context.Context, f gofs.FileHandle, flags uint32) (errno syscall.Errno) {
	defer n.fs.observe("fsync", time.Now(), &errno)
	if h, ok := f.(*handle); ok {
		return n.errno("fsync", h.f.Fsync(ctx))
	}
	return n.errno("fsync", n.fs.m.Sync())
}

// Release implements gofs.FileReleaser. The kernel ignores its result;
// errors were already reported by Flush.
func (h *handle) Release(ctx context.Context) (errno syscall.Errno) {
	defer h.fs.observe("release", time.Now(), &errno)
	if err := h.f.Close(context.WithoutCancel(ctx)); err != nil {
		h.fs.log.Error("release", "err", err)
	}
	return 0
}

// fallocate(2) mode bits.
const (
	fallocKeepSize  = 0x01 // FALLOC_FL_KEEP_SIZE
	fallocPunchHole = 0x02 // FALLOC_FL_PUNCH_HOLE
	fallocZeroRange = 0x10 // FALLOC_FL_ZERO_RANGE
)

// Allocate implements gofs.FileAllocater. Chunks are placed when written,
// so plain allocation checks that the space exists and grows the size;
// punching a hole and zeroing a range turn covered chunks into holes,
// which frees their space. Collapsing and inserting ranges are not
// supported (EOPNOTSUPP, as on many filesystems).
func (h *handle) Allocate(ctx context.Context, off uint64, size uint64, mode uint32) (errno syscall.Errno) {
	defer h.fs.observe("allocate", time.Now(), &errno)
	if off > math.MaxInt64 || size > math.MaxInt64-off {
		return syscall.EFBIG
	}
	keep := mode&fallocKeepSize != 0
	var err error
	switch mode &^ fallocKeepSize {
	case 0:
		err = h.f.Allocate(ctx, int64(off), int64(size), keep)
	case fallocPunchHole:
		if !keep {
			return syscall.EOPNOTSUPP // the kernel refuses this already
		}
		err = h.f.ZeroRange(ctx, int64(off), int64(size), true)
	case fallocZeroRange:
		err = h.f.ZeroRange(ctx, int64(off), int64(size), keep)
	default:
		return syscall.EOPNOTSUPP
	}
	return h.errno("fallocate", err)
}

// Lseek implements gofs.FileLseeker: SEEK_DATA and SEEK_HOLE find stored
// chunks and holes, so cp, tar and rsync can skip the holes of sparse
// files. The kernel answers the other whences itself.
func (h *handle) Lseek(ctx context.Context, off uint64, whence uint32) (_ uint64, errno syscall.Errno) {
	defer h.fs.observe("lseek", time.Now(), &errno)
	if off > math.MaxInt64 {
		return 0, syscall.ENXIO
	}
	pos, err := h.f.Seek(ctx, int64(off), int(whence))
	if errors.Is(err, io.EOF) {
		return 0, syscall.ENXIO
	}
	if err != nil {
		return 0, h.errno("lseek", err)
	}
	return uint64(pos), 0
}
