package fs

import (
	"context"

	"github.com/dhdfs/dhdfs/cluster"
)

// Pool is what the FUSE layer needs of a pool; *cluster.Manager is one.
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
	OpenFile(ino cluster.Ino) (*cluster.File, error)

	GetXattr(ino cluster.Ino, name string) ([]byte, error)
	SetXattr(ino cluster.Ino, name string, value []byte, flags cluster.XattrFlags) error
	RemoveXattr(ino cluster.Ino, name string) error
	ListXattr(ino cluster.Ino) ([]string, error)
}

var _ Pool = (*cluster.Manager)(nil)
