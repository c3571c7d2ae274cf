package fs

import (
	"context"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/dhdfs/dhdfs/cluster"
)

// Lookup implements gofs.NodeLookuper. A name too long to exist fails
// with ENAMETOOLONG, not ENOENT, so that chmod, unlink or rename of such a
// path say why.
func (n *Node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (_ *gofs.Inode, errno syscall.Errno) {
	defer n.fs.observe("lookup", time.Now(), &errno)
	n.fs.lookups.Add(1)
	i, err := n.fs.m.Lookup(n.ino(), name)
	if err != nil {
		return nil, n.errno("lookup", err)
	}
	return n.newChild(ctx, i, out), 0
}

// Mkdir implements gofs.NodeMkdirer.
func (n *Node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (_ *gofs.Inode, errno syscall.Errno) {
	defer n.fs.observe("mkdir", time.Now(), &errno)
	return n.make(ctx, "mkdir", name, cluster.NodeSpec{Mode: syscall.S_IFDIR | mode&0o7777}, out)
}

// make creates a child of any type for Mkdir, Mknod and Symlink.
func (n *Node) make(ctx context.Context, op, name string, s cluster.NodeSpec, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if errno := n.fs.writable(); errno != 0 {
		return nil, errno
	}
	i, err := n.fs.m.Make(n.ino(), name, s, caller(ctx))
	if err != nil {
		return nil, n.errno(op, err)
	}
	return n.newChild(ctx, i, out), 0
}

// Mknod implements gofs.NodeMknoder: regular files, FIFOs, sockets and
// device nodes. A device node keeps its number (st_rdev) and nothing more:
// FUSE mounts are nodev, so opening one fails and it grants no access to
// a device.
func (n *Node) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (_ *gofs.Inode, errno syscall.Errno) {
	defer n.fs.observe("mknod", time.Now(), &errno)
	return n.make(ctx, "mknod", name, cluster.NodeSpec{Mode: mode, Rdev: dev}, out)
}

// Create implements gofs.NodeCreater. The kernel sends O_EXCL semantics as
// a failed lookup first; Make fails with EEXIST if the name appeared since.
func (n *Node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (_ *gofs.Inode, _ gofs.FileHandle, _ uint32, errno syscall.Errno) {
	defer n.fs.observe("create", time.Now(), &errno)
	if errno := n.fs.writable(); errno != 0 {
		return nil, nil, 0, errno
	}
	i, err := n.fs.m.Make(n.ino(), name, cluster.NodeSpec{Mode: syscall.S_IFREG | mode&0o7777}, caller(ctx))
	if err != nil {
		return nil, nil, 0, n.errno("create", err)
	}
	f, err := n.fs.m.OpenFile(i.Ino)
	if err != nil {
		return nil, nil, 0, n.errno("create", err)
	}
	return n.newChild(ctx, i, out), &handle{f: f, fs: n.fs}, fuse.FOPEN_KEEP_CACHE, 0
}

// Tmpfile implements gofs.NodeTmpfiler: open(2) with O_TMPFILE. The file
// has no name and is freed once closed and forgotten, unless linkat(2)
// through /proc/self/fd names it first (Link clears its orphan mark).
func (n *Node) Tmpfile(ctx context.Context, flags uint32, mode uint32, out *fuse.EntryOut) (_ *gofs.Inode, _ gofs.FileHandle, _ uint32, errno syscall.Errno) {
	defer n.fs.observe("tmpfile", time.Now(), &errno)
	if errno := n.fs.writable(); errno != 0 {
		return nil, nil, 0, errno
	}
	i, err := n.fs.m.Tmpfile(n.ino(), mode&0o7777, caller(ctx))
	if err != nil {
		return nil, nil, 0, n.errno("tmpfile", err)
	}
	f, err := n.fs.m.OpenFile(i.Ino)
	if err != nil {
		return nil, nil, 0, n.errno("tmpfile", err)
	}
	return n.newChild(ctx, i, out), &handle{f: f, fs: n.fs}, fuse.FOPEN_KEEP_CACHE, 0
}

// Symlink implements gofs.NodeSymlinker.
func (n *Node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (_ *gofs.Inode, errno syscall.Errno) {
	defer n.fs.observe("symlink", time.Now(), &errno)
	return n.make(ctx, "symlink", name, cluster.NodeSpec{Mode: syscall.S_IFLNK | 0o777, Target: target}, out)
}

// Readlink implements gofs.NodeReadlinker.
func (n *Node) Readlink(ctx context.Context) (_ []byte, errno syscall.Errno) {
	defer n.fs.observe("readlink", time.Now(), &errno)
	i, err := n.fs.m.GetAttr(n.ino())
	if err != nil {
		return nil, n.errno("readlink", err)
	}
	if !i.IsSymlink() {
		return nil, syscall.EINVAL
	}
	return []byte(i.Target), 0
}

// Link implements gofs.NodeLinker.
func (n *Node) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (_ *gofs.Inode, errno syscall.Errno) {
	defer n.fs.observe("link", time.Now(), &errno)
	if errno := n.fs.writable(); errno != 0 {
		return nil, errno
	}
	i, err := n.fs.m.Link(cluster.Ino(target.EmbeddedInode().StableAttr().Ino), n.ino(), name)
	if err != nil {
		return nil, n.errno("link", err)
	}
	return n.newChild(ctx, i, out), 0
}

// Unlink implements gofs.NodeUnlinker.
func (n *Node) Unlink(ctx context.Context, name string) (errno syscall.Errno) {
	defer n.fs.observe("unlink", time.Now(), &errno)
	if errno := n.fs.writable(); errno != 0 {
		return errno
	}
	return n.errno("unlink", n.fs.m.Unlink(n.ino(), name))
}

// Rmdir implements gofs.NodeRmdirer.
func (n *Node) Rmdir(ctx context.Context, name string) (errno syscall.Errno) {
	defer n.fs.observe("rmdir", time.Now(), &errno)
	if errno := n.fs.writable(); errno != 0 {
		return errno
	}
	return n.errno("rmdir", n.fs.m.Rmdir(n.ino(), name))
}

// Rename implements gofs.NodeRenamer, with RENAME_NOREPLACE,
// RENAME_EXCHANGE and RENAME_WHITEOUT (the old name becomes a whiteout
// owned by the caller, as overlayfs expects of its upper layer); other
// flags fail with EINVAL.
func (n *Node) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) (errno syscall.Errno) {
	defer n.fs.observe("rename", time.Now(), &errno)
	if errno := n.fs.writable(); errno != 0 {
		return errno
	}
	dst := cluster.Ino(newParent.EmbeddedInode().StableAttr().Ino)
	return n.errno("rename", n.fs.m.RenameAs(n.ino(), name, dst, newName, cluster.RenameFlags(flags), caller(ctx)))
}
