// Package fs exposes a dhdfs pool as a FUSE filesystem through go-fuse v2's
// fs API. It translates kernel requests into cluster.Manager calls and
// errors into errnos; everything else happens in package cluster. It is the
// only package that imports go-fuse.
package fs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/dhdfs/dhdfs/cluster"
	"github.com/dhdfs/dhdfs/cluster/metrics"
)

// Config is how a pool is mounted.
type Config struct {
	// AllowOther lets users other than the mounter use the mount; the
	// kernel then checks permissions (default_permissions is always on).
	AllowOther bool
	// Debug logs every FUSE request and reply to stderr.
	Debug bool
	// Timeout is how long the kernel may cache names and attributes.
	// Every change goes through this mount, so the caches stay correct.
	Timeout time.Duration
	// Logger receives errors; nil discards them.
	Logger *slog.Logger
	// FsName is shown as the source in /proc/mounts and df.
	FsName string
	// Metrics, if set, records every FUSE request.
	Metrics *metrics.Metrics
	// ReadAhead is how far the kernel reads ahead of a sequential reader,
	// and so the size of its read requests (at most 1 MiB each). Zero
	// leaves the kernel's default (128 KiB). Setting it needs root; a
	// mount without leaves the default and logs why.
	ReadAhead int
	// ReadOnly mounts read-only (-o ro): the kernel refuses every change
	// with EROFS, and so does the mount itself in case the kernel was not
	// told (a mount through fusermount3 that dropped the flag).
	ReadOnly bool
	// Atime says when reads and directory listings update access times:
	// relatime by default, as Linux mounts (-o relatime, strictatime,
	// noatime).
	Atime cluster.AtimeMode
	// NoDirAtime leaves the access times of directories alone
	// (-o nodiratime).
	NoDirAtime bool
}

// DefaultReadAhead is one chunk of the default size: the kernel then asks
// for a whole chunk per request, the largest it sends.
const DefaultReadAhead = 1 << 20

// MaxReadAhead bounds Config.ReadAhead: past a few MiB, read-ahead only
// costs random readers (each cache miss next to cached data reads up to
// this much) and memory.
const MaxReadAhead = 64 << 20

// DefaultConfig returns the settings `dhdfs mount` uses without flags.
func DefaultConfig() Config {
	return Config{Timeout: time.Second, FsName: "dhdfs", ReadAhead: DefaultReadAhead}
}

// Validate reports settings Mount cannot use.
func (c Config) Validate() error {
	if c.ReadAhead < 0 || c.ReadAhead > MaxReadAhead {
		return fmt.Errorf("read-ahead %d bytes: want 0 (the kernel's default) up to %d MiB", c.ReadAhead, MaxReadAhead>>20)
	}
	if c.Timeout < 0 {
		return fmt.Errorf("cache timeout %v: want 0 or more", c.Timeout)
	}
	return nil
}

// FS is a mounted pool.
type FS struct {
	m   Pool
	log *slog.Logger
	cfg Config

	mu    sync.Mutex
	nodes map[cluster.Ino]*Node // guarded by mu: the nodes the kernel knows

	// dirScanned counts the directory entries fetched from the metadata
	// for listings, and lookups the lookups (also those the kernel asks
	// for along with a listing), so tests can check that reading a
	// directory costs O(entries) however it is read.
	dirScanned, lookups atomic.Int64
}

// Node is a file, directory or symlink of the pool. Its go-fuse inode
// number is the pool's inode number, so hard links show one inode and
// numbers are never reused.
type Node struct {
	gofs.Inode
	fs *FS
}

// observe records a request for metrics once it is answered.
func (fsys *FS) observe(op string, start time.Time, errno *syscall.Errno) {
	fsys.cfg.Metrics.FUSE(op, start, *errno)
}

func (n *Node) ino() cluster.Ino { return cluster.Ino(n.StableAttr().Ino) }

func (n *Node) errno(op string, err error) syscall.Errno { return errnoOf(n.fs.log, op, err) }

// Mount mounts the pool at dir and returns the running server; the caller
// waits on it and unmounts it.
func Mount(dir string, m Pool, cfg Config) (*fuse.Server, error) {
	srv, _, err := mount(dir, m, cfg)
	return srv, err
}

// mount is Mount, also returning the FS for tests.
func mount(dir string, m Pool, cfg Config) (*fuse.Server, *FS, error) {
	if err := checkMountPoint(dir); err != nil {
		return nil, nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.FsName == "" {
		cfg.FsName = "dhdfs"
	}
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	// The mount table names the mount point without symlinks; resolve it
	// before mounting, as afterwards that would be a request to ourselves.
	resolved, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("mount point %s: %w", dir, err)
	}
	fsys := &FS{m: m, log: cfg.Logger, cfg: cfg, nodes: map[cluster.Ino]*Node{}}
	root := &Node{fs: fsys}
	fsys.nodes[cluster.RootIno] = root
	// Changes made by dhdfs commands through the control socket bypass the
	// kernel: tell it to drop the names it cached. Never from inside a
	// FUSE request (go-fuse can deadlock), so in a goroutine.
	m.SetChangeHook(func(parent cluster.Ino, name string) {
		go func() {
			fsys.mu.Lock()
			n := fsys.nodes[parent]
			fsys.mu.Unlock()
			if n != nil {
				n.NotifyEntry(name)
			}
		}()
	})
	timeout := cfg.Timeout
	negative := time.Duration(0)
	opts := &gofs.Options{
		MountOptions: fuse.MountOptions{
			FsName:       cfg.FsName,
			Name:         "dhdfs",
			MaxWrite:     1 << 20,
			MaxReadAhead: max(cfg.ReadAhead, 1<<20),
			AllowOther:   cfg.AllowOther,
			Debug:        cfg.Debug,
			DirectMount:  os.Geteuid() == 0,
			Options:      append([]string{"default_permissions"}, cfg.mountFlagNames()...),
			// For a direct mount (as root) read-only and the access time
			// policy are flags of mount(2): the kernel refuses them as
			// FUSE options. fusermount3 takes them by name (above).
			DirectMountFlags: cfg.mountFlags(),
			// Listings always carry attributes (READDIRPLUS), which
			// makes ls -l fast. Not READDIRPLUS_AUTO, which would spare
			// the lookups after a seekdir: the kernel then switches
			// between plain and plus requests within a listing, and
			// go-fuse 2.12.1, re-sending entries a reader did not take
			// in a request too small for them (plus entries are larger),
			// loses the rest (see TestReaddirWhileChanging).
		},
		EntryTimeout:    &timeout,
		AttrTimeout:     &timeout,
		NegativeTimeout: &negative,
		NullPermissions: true,
		RootStableAttr:  &gofs.StableAttr{Ino: uint64(cluster.RootIno), Mode: syscall.S_IFDIR},
	}
	srv, err := gofs.Mount(dir, root, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	if cfg.ReadAhead > 0 {
		if err := setReadAhead(resolved, cfg.ReadAhead); errors.Is(err, os.ErrPermission) {
			fsys.log.Info("kernel read-ahead left at its default: raising it needs root", "dir", dir)
		} else if err != nil {
			fsys.log.Warn("kernel read-ahead left at its default", "err", err)
		}
	}
	return srv, fsys, nil
}

// checkMountPoint gives clear errors for the usual mistakes before the
// kernel gives an obscure one.
func checkMountPoint(dir string) error {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("/dev/fuse is missing: load the fuse module (modprobe fuse) or install fuse3")
	}
	st, err := os.Stat(dir)
	if errors.Is(err, syscall.ENOTCONN) {
		return fmt.Errorf("mount point %s: a mount whose process died is still attached there; detach it with 'dhdfs umount %s' (or fusermount3 -u) first", dir, dir)
	}
	if err != nil {
		return fmt.Errorf("mount point %s: %w", dir, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("mount point %s is not a directory", dir)
	}
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("mount point %s: %w", dir, err)
	}
	defer f.Close()
	if names, _ := f.Readdirnames(1); len(names) > 0 {
		return fmt.Errorf("mount point %s is not empty", dir)
	}
	var here, parent syscall.Stat_t
	if syscall.Stat(dir, &here) == nil && syscall.Stat(filepath.Join(dir, ".."), &parent) == nil &&
		(here.Dev != parent.Dev || here.Ino == parent.Ino) {
		return fmt.Errorf("%s is already a mount point", dir)
	}
	return nil
}

// caller returns the uid and gid of the process making the request.
func caller(ctx context.Context) cluster.Caller {
	if c, ok := fuse.FromContext(ctx); ok {
		return cluster.Caller{Uid: c.Uid, Gid: c.Gid}
	}
	return cluster.Caller{Uid: uint32(os.Getuid()), Gid: uint32(os.Getgid())}
}

// fillAttr copies an inode's attributes into a FUSE reply.
func (fsys *FS) fillAttr(i *cluster.Inode, out *fuse.Attr) {
	out.Ino = uint64(i.Ino)
	out.Mode = i.Mode
	out.Nlink = i.Nlink
	out.Uid, out.Gid = i.Uid, i.Gid
	out.Size = uint64(i.Size)
	out.Rdev = i.Rdev
	// st_blocks counts what is stored, so holes and sparse files show
	// as such to du, cp --sparse and tar -S.
	stored := i.Stored
	if stored < 0 || !i.IsRegular() {
		stored = i.Size
	}
	out.Blocks = (uint64(stored) + 511) / 512
	// Applications size their buffers by st_blksize: one chunk (up to the
	// 1 MiB FUSE write limit) per request is what dhdfs does best.
	out.Blksize = uint32(min(fsys.m.Config().ChunkSize, 1<<20))
	setTime := func(ns int64, sec *uint64, nsec *uint32) {
		*sec, *nsec = uint64(ns/1e9), uint32(ns%1e9)
	}
	setTime(i.Atime, &out.Atime, &out.Atimensec)
	setTime(i.Mtime, &out.Mtime, &out.Mtimensec)
	setTime(i.Ctime, &out.Ctime, &out.Ctimensec)
	if i.IsDir() {
		// glibc's readdir asks for st_blksize bytes of entries at a time
		// (32 KiB at least): at a chunk's size, each seekdir would make
		// the kernel list, and look up, the rest of the directory.
		out.Blksize = dirBlksize
	}
}

// dirBlksize is the st_blksize of directories, as on ext4.
const dirBlksize = 4096

// newChild wraps a pool inode in a go-fuse inode and fills the entry reply.
func (n *Node) newChild(ctx context.Context, i cluster.Inode, out *fuse.EntryOut) *gofs.Inode {
	n.fs.fillAttr(&i, &out.Attr)
	n.fs.m.Hold(i.Ino)
	child := n.NewInode(ctx, &Node{fs: n.fs}, gofs.StableAttr{Mode: i.Mode & syscall.S_IFMT, Ino: uint64(i.Ino)})
	if node, ok := child.Operations().(*Node); ok {
		n.fs.mu.Lock()
		n.fs.nodes[i.Ino] = node
		n.fs.mu.Unlock()
	}
	return child
}

// OnForget implements gofs.NodeOnForgetter: the kernel no longer knows the
// inode, so an unlinked one can go.
func (n *Node) OnForget() {
	n.fs.mu.Lock()
	if n.fs.nodes[n.ino()] == n {
		delete(n.fs.nodes, n.ino())
	}
	n.fs.mu.Unlock()
	if err := n.fs.m.Forget(n.ino()); err != nil {
		n.fs.log.Error("free forgotten inode", "ino", n.ino(), "err", err)
	}
}
