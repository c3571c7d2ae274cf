// Command loopback mounts a plain directory through go-fuse, for
// scripts/bench.sh only: it is the cost of FUSE alone, the reference dhdfs
// is measured against. By default the kernel's FUSE passthrough is off, so
// every byte goes through this process as it does through dhdfs;
// -passthrough turns it on to show the kernel's limit.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// node is a loopback node whose open files never use passthrough.
type node struct {
	fs.LoopbackNode
}

// file hides the loopback file's passthrough descriptor.
type file struct {
	*fs.LoopbackFile
}

func (file) PassthroughFd() (int, bool) { return -1, false }

func wrap(fh fs.FileHandle) fs.FileHandle {
	if lf, ok := fh.(*fs.LoopbackFile); ok {
		return file{lf}
	}
	return fh
}

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	fh, fl, errno := n.LoopbackNode.Open(ctx, flags)
	return wrap(fh), fl, errno
}

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	in, fh, fl, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	return in, wrap(fh), fl, errno
}

func main() {
	passthrough := flag.Bool("passthrough", false, "let the kernel read and write the backing files itself")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: loopback [-passthrough] DIR MOUNTPOINT")
		os.Exit(2)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(flag.Arg(0), &st); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	root := &fs.LoopbackRoot{Path: flag.Arg(0), Dev: uint64(st.Dev)}
	var rootNode fs.InodeEmbedder
	if *passthrough {
		rootNode = &fs.LoopbackNode{RootData: root}
	} else {
		root.NewNode = func(r *fs.LoopbackRoot, _ *fs.Inode, _ string, _ *syscall.Stat_t) fs.InodeEmbedder {
			return &node{fs.LoopbackNode{RootData: r}}
		}
		rootNode = &node{fs.LoopbackNode{RootData: root}}
	}
	root.RootNode = rootNode
	timeout := time.Second
	srv, err := fs.Mount(flag.Arg(1), rootNode, &fs.Options{
		MountOptions: fuse.MountOptions{FsName: "loopback", MaxWrite: 1 << 20, MaxReadAhead: 1 << 20,
			DirectMount: os.Geteuid() == 0, Options: []string{"default_permissions"}},
		EntryTimeout: &timeout, AttrTimeout: &timeout,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sigs
		srv.Unmount()
	}()
	srv.Wait()
}
