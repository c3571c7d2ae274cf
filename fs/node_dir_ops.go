package fs

import (
	"context"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/dhdfs/dhdfs/cluster"
)

// Lookup implements gofs.NodeLookuper.
func (n *Node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (_ *gofs.Inode, errno syscall.Errno) {
	defer n.fs.observe("lookup", time.Now(), &errno)
	i, err := n.fs.m.Lookup(n.ino(), name)
	if err != nil {
		return nil, n.errno("lookup", err)
	}
	return n.newChild(ctx, i, out), 0
}

// Readdir implements gofs.NodeReaddirer.
func (n *Node) Readdir(ctx context.Context) (_ gofs.DirStream, errno syscall.Errno) {
	defer n.fs.observe("readdir", time.Now(), &errno)
	entries, err := n.fs.m.ReadDir(n.ino())
	if err != nil {
		return nil, n.errno("readdir", err)
	}
	list := make([]fuse.DirEntry, len(entries))
	for i, e := range entries {
		list[i] = fuse.DirEntry{Name: e.Name, Ino: uint64(e.Ino), Mode: e.Type}
	}
	return gofs.NewListDirStream(list), 0
}

// Mkdir implements gofs.NodeMkdirer.
func (n *Node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (_ *gofs.Inode, errno syscall.Errno) {
	defer n.fs.observe("mkdir", time.Now(), &errno)
	i, err := n.fs.m.Mknod(n.ino(), name, syscall.S_IFDIR|mode&0o7777, caller(ctx), "")
	if err != nil {
		return nil, n.errno("mkdir", err)
	}
	return n.newChild(ctx, i, out), 0
}

// Mknod implements gofs.NodeMknoder: regular files, FIFOs and sockets
// (device nodes would need privileges a pool does not grant).
func (n *Node) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (_ *gofs.Inode, errno syscall.Errno) {
	defer n.fs.observe("mknod", time.Now(), &errno)
	switch mode & syscall.S_IFMT {
	case syscall.S_IFREG, syscall.S_IFIFO, syscall.S_IFSOCK, 0:
	default:
		return nil, syscall.EPERM
	}
	i, err := n.fs.m.Mknod(n.ino(), name, mode, caller(ctx), "")
	if err != nil {
		return nil, n.errno("mknod", err)
	}
	return n.newChild(ctx, i, out), 0
}

// Create implements gofs.NodeCreater. The kernel sends O_EXCL semantics as
// a failed lookup first; Mknod fails with EEXIST if the name appeared since.
func (n *Node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (_ *gofs.Inode, _ gofs.FileHandle, _ uint32, errno syscall.Errno) {
	defer n.fs.observe("create", time.Now(), &errno)
	i, err := n.fs.m.Mknod(n.ino(), name, syscall.S_IFREG|mode&0o7777, caller(ctx), "")
	if err != nil {
		return nil, nil, 0, n.errno("create", err)
	}
	f, err := n.fs.m.OpenFile(i.Ino)
	if err != nil {
		return nil, nil, 0, n.errno("create", err)
	}
	return n.newChild(ctx, i, out), &handle{f: f, fs: n.fs}, fuse.FOPEN_KEEP_CACHE, 0
}

// Symlink implements gofs.NodeSymlinker.
func (n *Node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (_ *gofs.Inode, errno syscall.Errno) {
	defer n.fs.observe("symlink", time.Now(), &errno)
	i, err := n.fs.m.Mknod(n.ino(), name, syscall.S_IFLNK|0o777, caller(ctx), target)
	if err != nil {
		return nil, n.errno("symlink", err)
	}
	return n.newChild(ctx, i, out), 0
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
	i, err := n.fs.m.Link(cluster.Ino(target.EmbeddedInode().StableAttr().Ino), n.ino(), name)
	if err != nil {
		return nil, n.errno("link", err)
	}
	return n.newChild(ctx, i, out), 0
}

// Unlink implements gofs.NodeUnlinker.
func (n *Node) Unlink(ctx context.Context, name string) (errno syscall.Errno) {
	defer n.fs.observe("unlink", time.Now(), &errno)
	return n.errno("unlink", n.fs.m.Unlink(n.ino(), name))
}

// Rmdir implements gofs.NodeRmdirer.
func (n *Node) Rmdir(ctx context.Context, name string) (errno syscall.Errno) {
	defer n.fs.observe("rmdir", time.Now(), &errno)
	return n.errno("rmdir", n.fs.m.Rmdir(n.ino(), name))
}

// Rename implements gofs.NodeRenamer, with RENAME_NOREPLACE and
// RENAME_EXCHANGE.
func (n *Node) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) (errno syscall.Errno) {
	defer n.fs.observe("rename", time.Now(), &errno)
	dst := cluster.Ino(newParent.EmbeddedInode().StableAttr().Ino)
	return n.errno("rename", n.fs.m.Rename(n.ino(), name, dst, newName, cluster.RenameFlags(flags)))
}
