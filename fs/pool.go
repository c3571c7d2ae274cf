package fs

import (
	"context"

	"github.com/dhdfs/dhdfs/cluster"
)

// Pool is what the FUSE layer needs of a pool; ManagerPool makes one of a
// *cluster.Manager.
// It is declared here, where it is used, so that the FUSE layer depends on
// these calls only, and another pool (a test double, a pool whose
// metadata lives elsewhere) mounts without this package changing.
type Pool interface {
	Config() cluster.PoolConfig
	Space() cluster.PoolSpace
	InodeCount() (uint64, error)
	Sync() error

	GetAttr(ino cluster.Ino) (cluster.Inode, error)
	SetAttr(ctx context.Context, ino cluster.Ino, in cluster.SetAttrIn) (cluster.Inode, error)
	TouchAtime(ino cluster.Ino, mode cluster.AtimeMode) (bool, error)
	Lookup(parent cluster.Ino, name string) (cluster.Inode, error)
	ReadDirAfter(ino cluster.Ino, after string, limit int) ([]cluster.DirEntry, error)
	Make(parent cluster.Ino, name string, s cluster.NodeSpec, c cluster.Caller) (cluster.Inode, error)
	Tmpfile(dir cluster.Ino, mode uint32, c cluster.Caller) (cluster.Inode, error)
	Link(ino, parent cluster.Ino, name string) (cluster.Inode, error)
	Unlink(parent cluster.Ino, name string) error
	Rmdir(parent cluster.Ino, name string) error
	RenameAs(oldParent cluster.Ino, oldName string, newParent cluster.Ino, newName string, flags cluster.RenameFlags, c cluster.Caller) error
	// SetChangeHook is told of every name that changes, so that the
	// kernel's caches can be invalidated.
	SetChangeHook(h func(parent cluster.Ino, name string))

	// Hold keeps an inode alive while the kernel knows it, even without
	// a name; Forget lets it go.
	Hold(ino cluster.Ino)
	Forget(ino cluster.Ino) error
	// OpenFile opens ino for I/O; every handle on one inode shares what
	// it returns until the last one is closed.
	OpenFile(ino cluster.Ino) (File, error)

	GetXattr(ino cluster.Ino, name string) ([]byte, error)
	SetXattr(ino cluster.Ino, name string, value []byte, flags cluster.XattrFlags) error
	RemoveXattr(ino cluster.Ino, name string) error
	ListXattr(ino cluster.Ino) ([]string, error)
}

// File is an open file of the pool, as the FUSE layer uses it. Offsets
// and lengths are bytes; the context carries the request's cancellation.
type File interface {
	// ReadShared reads up to len(p) bytes at off into p or, where it can,
	// returns slices of the pool's own buffers instead (read-only), and
	// how many bytes in all. done, never nil, gives the pool's buffers
	// back: the caller calls it once it no longer uses the slices, also
	// after an error.
	ReadShared(ctx context.Context, p []byte, off int64) (vec [][]byte, n int, done func(), err error)
	WriteAt(ctx context.Context, p []byte, off int64) (int, error)
	// Size is the file's length, with writes not yet flushed.
	Size() int64
	// Truncate sets the length (O_TRUNC at open).
	Truncate(ctx context.Context, size int64) error
	// Allocate reserves [off, off+length), growing the file unless keepSize.
	Allocate(ctx context.Context, off, length int64, keepSize bool) error
	// ZeroRange makes [off, off+length) read as zeros (growing the file
	// unless keepSize).
	ZeroRange(ctx context.Context, off, length int64, keepSize bool) error
	// Seek finds data or holes (SEEK_DATA, SEEK_HOLE) from off.
	Seek(ctx context.Context, off int64, whence int) (int64, error)
	// Flush writes buffered data to the drives (close(2) semantics);
	// Fsync also makes it and the file's metadata durable.
	Flush(ctx context.Context) error
	Fsync(ctx context.Context) error
	// Close releases one handle's share.
	Close(ctx context.Context) error
}

// ManagerPool is the Pool of a *cluster.Manager, whose OpenFile returns
// its own file type.
func ManagerPool(m *cluster.Manager) Pool { return managerPool{m} }

type managerPool struct{ *cluster.Manager }

func (p managerPool) OpenFile(ino cluster.Ino) (File, error) {
	f, err := p.Manager.OpenFile(ino)
	if err != nil {
		return nil, err // not a nil *cluster.File in a non-nil File
	}
	return f, nil
}
