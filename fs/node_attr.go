package fs

import (
	"context"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/dhdfs/dhdfs/cluster"
)

// Getattr implements gofs.NodeGetattrer. The size includes writes still
// buffered in open handles.
func (n *Node) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) (errno syscall.Errno) {
	defer n.fs.observe("getattr", time.Now(), &errno)
	i, err := n.fs.m.GetAttr(n.ino())
	if err != nil {
		return n.errno("getattr", err)
	}
	n.fs.fillAttr(&i, &out.Attr)
	return 0
}

// Statx implements gofs.NodeStatxer: Getattr's attributes plus the birth
// time (stat's "Birth"), which the inode records from its creation.
func (n *Node) Statx(ctx context.Context, f gofs.FileHandle, flags uint32, mask uint32, out *fuse.StatxOut) (errno syscall.Errno) {
	defer n.fs.observe("statx", time.Now(), &errno)
	i, err := n.fs.m.GetAttr(n.ino())
	if err != nil {
		return n.errno("statx", err)
	}
	var a fuse.Attr
	n.fs.fillAttr(&i, &a)
	sx := &out.Statx
	sx.Mask = unix.STATX_BASIC_STATS
	sx.Ino, sx.Mode, sx.Nlink = a.Ino, uint16(a.Mode), a.Nlink
	sx.Uid, sx.Gid = a.Uid, a.Gid
	sx.Size, sx.Blocks, sx.Blksize = a.Size, a.Blocks, a.Blksize
	sx.RdevMajor, sx.RdevMinor = unix.Major(uint64(a.Rdev)), unix.Minor(uint64(a.Rdev))
	sx.Atime = fuse.SxTime{Sec: a.Atime, Nsec: a.Atimensec}
	sx.Mtime = fuse.SxTime{Sec: a.Mtime, Nsec: a.Mtimensec}
	sx.Ctime = fuse.SxTime{Sec: a.Ctime, Nsec: a.Ctimensec}
	if i.Btime > 0 { // unknown for inodes made before it was kept
		sx.Mask |= unix.STATX_BTIME
		sx.Btime = fuse.SxTime{Sec: uint64(i.Btime / 1e9), Nsec: uint32(i.Btime % 1e9)}
	}
	return 0
}

// Setattr implements gofs.NodeSetattrer: chmod, chown, utimens, truncate.
func (n *Node) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) (errno syscall.Errno) {
	defer n.fs.observe("setattr", time.Now(), &errno)
	if errno := n.fs.writable(); errno != 0 {
		return errno
	}
	var s cluster.SetAttrIn
	if mode, ok := in.GetMode(); ok {
		s.Mode = &mode
	}
	if uid, ok := in.GetUID(); ok {
		s.Uid = &uid
	}
	if gid, ok := in.GetGID(); ok {
		s.Gid = &gid
	}
	if size, ok := in.GetSize(); ok {
		sz := int64(size)
		s.Size = &sz
	}
	if t, ok := in.GetATime(); ok {
		ns := t.UnixNano()
		s.Atime = &ns
	}
	if t, ok := in.GetMTime(); ok {
		ns := t.UnixNano()
		s.Mtime = &ns
	}
	i, err := n.fs.m.SetAttr(ctx, n.ino(), s)
	if err != nil {
		return n.errno("setattr", err)
	}
	n.fs.fillAttr(&i, &out.Attr)
	return 0
}

// Access implements gofs.NodeAccesser. With default_permissions the kernel
// checks permissions itself and rarely asks; this answers the same way.
func (n *Node) Access(ctx context.Context, mask uint32) (errno syscall.Errno) {
	defer n.fs.observe("access", time.Now(), &errno)
	i, err := n.fs.m.GetAttr(n.ino())
	if err != nil {
		return n.errno("access", err)
	}
	c := caller(ctx)
	if c.Uid == 0 {
		if mask&1 != 0 && i.Mode&0o111 == 0 && !i.IsDir() {
			return syscall.EACCES
		}
		return 0
	}
	perm := i.Mode & 0o7
	switch {
	case c.Uid == i.Uid:
		perm = i.Mode >> 6 & 0o7
	case c.Gid == i.Gid:
		perm = i.Mode >> 3 & 0o7
	}
	if mask&perm != mask {
		return syscall.EACCES
	}
	return 0
}

// Statfs implements gofs.NodeStatfser. The drives' filesystems are each
// counted once and divided by the replication factor: the available space
// (df's Avail) is what new chunks can use, their free space less what
// placement keeps free on each (cluster.PoolSpace.Avail), so df shows how
// much more file data fits; the free space counts the reserve too, as
// ext4's free blocks count its reserved ones.
func (n *Node) Statfs(ctx context.Context, out *fuse.StatfsOut) (errno syscall.Errno) {
	defer n.fs.observe("statfs", time.Now(), &errno)
	sp := n.fs.m.Space()
	r := int64(n.fs.m.Config().Replicas)
	const bsize = 4096
	out.Bsize, out.Frsize = bsize, bsize
	out.Blocks = uint64(sp.Total / r / bsize)
	out.Bfree = uint64(sp.Free / r / bsize)
	out.Bavail = uint64(sp.Avail / r / bsize)
	// Inodes are keys in the metadata store: there is no fixed table, so
	// df -i shows those in use out of a large number.
	used, err := n.fs.m.InodeCount()
	if err != nil {
		return n.errno("statfs", err)
	}
	const freeInodes = 1 << 40
	out.Files = used + freeInodes
	out.Ffree = freeInodes
	out.NameLen = cluster.MaxNameLen
	return 0
}
