package fs

import (
	"context"
	"syscall"
	"time"

	"github.com/dhdfs/dhdfs/cluster"
)

// Getxattr implements gofs.NodeGetxattrer.
func (n *Node) Getxattr(ctx context.Context, attr string, dest []byte) (_ uint32, errno syscall.Errno) {
	defer n.fs.observe("getxattr", time.Now(), &errno)
	v, err := n.fs.m.GetXattr(n.ino(), attr)
	if err != nil {
		return 0, n.errno("getxattr", err)
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

// Setxattr implements gofs.NodeSetxattrer.
func (n *Node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) (errno syscall.Errno) {
	defer n.fs.observe("setxattr", time.Now(), &errno)
	if errno := n.fs.writable(); errno != 0 {
		return errno
	}
	return n.errno("setxattr", n.fs.m.SetXattr(n.ino(), attr, data, cluster.XattrFlags(flags)))
}

// Removexattr implements gofs.NodeRemovexattrer.
func (n *Node) Removexattr(ctx context.Context, attr string) (errno syscall.Errno) {
	defer n.fs.observe("removexattr", time.Now(), &errno)
	if errno := n.fs.writable(); errno != 0 {
		return errno
	}
	return n.errno("removexattr", n.fs.m.RemoveXattr(n.ino(), attr))
}

// Listxattr implements gofs.NodeListxattrer.
func (n *Node) Listxattr(ctx context.Context, dest []byte) (_ uint32, errno syscall.Errno) {
	defer n.fs.observe("listxattr", time.Now(), &errno)
	names, err := n.fs.m.ListXattr(n.ino())
	if err != nil {
		return 0, n.errno("listxattr", err)
	}
	size := 0
	for _, nm := range names {
		size += len(nm) + 1
	}
	if len(dest) < size {
		return uint32(size), syscall.ERANGE
	}
	off := 0
	for _, nm := range names {
		off += copy(dest[off:], nm)
		dest[off] = 0
		off++
	}
	return uint32(size), 0
}
