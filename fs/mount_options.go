package fs

import (
	"os"
	"syscall"
	"time"

	"github.com/dhdfs/dhdfs/cluster"
)

// mountFlags returns the mount(2) flags of a direct mount: nosuid and
// nodev as fusermount3 sets them (so device nodes in the pool are inert),
// read-only and the access time policy, which /proc/mounts then shows.
func (c Config) mountFlags() uintptr {
	flags := uintptr(syscall.MS_NOSUID | syscall.MS_NODEV)
	if c.ReadOnly {
		flags |= syscall.MS_RDONLY
	}
	switch c.Atime {
	case cluster.AtimeNever:
		flags |= syscall.MS_NOATIME
	case cluster.AtimeStrict:
		flags |= syscall.MS_STRICTATIME
	default:
		flags |= syscall.MS_RELATIME
	}
	if c.NoDirAtime {
		flags |= syscall.MS_NODIRATIME
	}
	return flags
}

// mountFlagNames returns the same settings as options for fusermount3,
// which turns them into mount(2) flags. Version 3.14 knows ro and noatime
// but not nodiratime or strictatime, and passes what it does not know to
// the kernel, which then refuses the mount: a mount through it shows
// those two only, and keeps its other access time settings itself. A direct
// mount passes FUSE options to the kernel as they are, so it gets none
// (it falls back to fusermount3 only when mounting directly fails; the
// mount still enforces read-only and its atime policy itself).
func (c Config) mountFlagNames() []string {
	if os.Geteuid() == 0 {
		return nil
	}
	var names []string
	if c.ReadOnly {
		names = append(names, "ro")
	}
	if c.Atime == cluster.AtimeNever {
		names = append(names, "noatime")
	}
	return names
}

// atimeMode returns how an access to a node of this mode updates its
// access time: never on a read-only mount, nor for directories under
// nodiratime.
func (c Config) atimeMode(dir bool) cluster.AtimeMode {
	if c.ReadOnly || dir && c.NoDirAtime {
		return cluster.AtimeNever
	}
	return c.Atime
}

// writable returns EROFS on a read-only mount. The kernel refuses changes
// to a read-only mount before they get here; this holds when it was not
// told (see mountFlagNames).
func (fsys *FS) writable() syscall.Errno {
	if fsys.cfg.ReadOnly {
		return syscall.EROFS
	}
	return 0
}

// accessed is called as a node is opened with flags: it refuses opening
// for writing on a read-only mount and records the access time of a read.
// A read the kernel serves from its page cache never reaches the mount,
// so the access time is kept at open, not at each read.
func (n *Node) accessed(flags uint32) syscall.Errno {
	acc := flags & syscall.O_ACCMODE
	if acc != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0 {
		if errno := n.fs.writable(); errno != 0 {
			return errno
		}
	}
	if acc == syscall.O_WRONLY {
		return 0
	}
	n.touchAtime(false)
	return 0
}

// notifyWait bounds how long an open waits for the kernel to take a notice.
const notifyWait = 100 * time.Millisecond

// touchAtime records an access to the node. The kernel cached the node's
// attributes when it looked the name up, just before the open or listing:
// it is told to drop them, so that stat shows the new access time.
// The open itself succeeds whatever happens: a lost access time is not
// worth failing a read for.
func (n *Node) touchAtime(dir bool) {
	changed, err := n.fs.m.TouchAtime(n.ino(), n.fs.cfg.atimeMode(dir))
	if err != nil {
		n.fs.log.Warn("update access time", "ino", n.ino(), "err", err)
	}
	if changed {
		// Never from inside a request (go-fuse can deadlock), but waited
		// for a moment: a stat right after the read would otherwise race
		// the notice and show the attributes of the lookup. An offset of
		// -1 drops the attributes only, not the cached content.
		done := make(chan struct{})
		go func() {
			n.NotifyContent(-1, 0)
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(notifyWait):
		}
	}
}
