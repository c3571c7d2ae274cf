package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dhdfs/dhdfs/cluster/mountinfo"
)

// poolLock is an exclusive flock on HOME/lock. The file holds the owner's
// pid on its first line and, once the owner serves the pool on a mount,
// the mount point on the second. The kernel drops the lock when the
// process dies, so a killed process never leaves a stale lock behind.
type poolLock struct{ f *os.File }

func lockPool(home string) (*poolLock, error) {
	path := filepath.Join(home, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open pool lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			if pid, _ := readLock(home); pid > 0 {
				return nil, fmt.Errorf("%w by pid %d (%s)", ErrPoolInUse, pid, home)
			}
			return nil, fmt.Errorf("%w (%s)", ErrPoolInUse, home)
		}
		return nil, fmt.Errorf("lock pool: %w", err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &poolLock{f: f}, nil
}

// readLock returns the pid and the mount point recorded in home's lock
// file (0 and "" when absent).
func readLock(home string) (pid int, mountPoint string) {
	b, _ := os.ReadFile(filepath.Join(home, lockFile))
	first, rest, _ := strings.Cut(string(b), "\n")
	pid, _ = strconv.Atoi(strings.TrimSpace(first))
	return pid, strings.TrimSuffix(rest, "\n")
}

// setMountPoint records dir as the mount this process serves the pool on.
func (l *poolLock) setMountPoint(dir string) {
	if l == nil || l.f == nil {
		return
	}
	// Longer than the pid line alone, so written over it in one go: a
	// reader never sees the file empty.
	_, _ = l.f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"+dir+"\n"), 0)
}

func (l *poolLock) release() {
	if l == nil || l.f == nil {
		return
	}
	_ = l.f.Truncate(0)
	_ = l.f.Close() // closing drops the flock
	l.f = nil
}

// Mounted records in the pool lock that this process serves the pool on
// a mount at dir (absolute). Once dir is unmounted, while this process
// flushes and exits, a process opening the pool waits for it rather than
// refusing (see lockPoolWait).
func (m *Manager) Mounted(dir string) {
	// As the mount table shows it: with its parent's symlinks resolved (the
	// mount point itself is not touched: this process serves it).
	if parent, err := filepath.EvalSymlinks(filepath.Dir(dir)); err == nil {
		dir = filepath.Join(parent, filepath.Base(dir))
	}
	m.lock.setMountPoint(dir)
	m.mountDir.Store(&dir)
}

// MountInfo says where a pool is mounted, by which process.
type MountInfo struct {
	Dir string `json:"dir"`
	Pid int    `json:"pid"`
}

// mountInfo returns where this process serves the pool, nil if it does
// not (a command that opened the pool itself).
func (m *Manager) mountInfo() *MountInfo {
	if d := m.mountDir.Load(); d != nil {
		return &MountInfo{Dir: *d, Pid: os.Getpid()}
	}
	return nil
}

// unmountWait bounds how long opening a pool waits for a mount that was
// unmounted to finish (flush its files, sync the drives, mirror the
// metadata) and release the pool.
var unmountWait = 30 * time.Second

// lockPoolWait is lockPool for opening the pool. After a plain umount (or
// fusermount3 -u) the mount process still holds the pool for a moment
// while it finishes; a mount or command started right then would be
// refused. So when the holder recorded a mount point that is no longer
// mounted, this waits (up to unmountWait, saying so once) for it to let
// go. A holder that is still mounted, or that never mounted (a command, a
// mount still starting), is refused at once.
func lockPoolWait(home string, log *slog.Logger) (*poolLock, error) {
	l, err := lockPool(home)
	if !errors.Is(err, ErrPoolInUse) {
		return l, err
	}
	pid, dir := readLock(home)
	if dir == "" || isMounted(dir) {
		return nil, err
	}
	if log != nil {
		log.Warn(fmt.Sprintf("pool is held by pid %d, which was unmounted from %s and is finishing: waiting for it (up to %v)", pid, dir, unmountWait))
	}
	for deadline := time.Now().Add(unmountWait); time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		l, err = lockPool(home)
		if !errors.Is(err, ErrPoolInUse) {
			return l, err
		}
		// An empty file is the holder letting go (release truncates
		// before it closes); another pid is a new holder.
		if p, d := readLock(home); p != 0 && (p != pid || d != dir) {
			return nil, err // another process took the pool meanwhile
		}
	}
	return nil, fmt.Errorf("%w by pid %d, still finishing after its unmount from %s %v ago (%s)", ErrPoolInUse, pid, dir, unmountWait, home)
}

// isMounted reports whether a FUSE filesystem is mounted at dir. If the
// mount table cannot be read it says yes: then the caller refuses, as it
// did before waiting existed.
func isMounted(dir string) bool {
	mounts, err := mountinfo.Read()
	if err != nil {
		return true
	}
	for _, m := range mounts {
		if m.MountPoint == dir && strings.HasPrefix(m.FSType, "fuse") {
			return true
		}
	}
	return false
}

// PoolInUse reports whether a process holds the pool in home, and its pid.
func PoolInUse(home string) (pid int, inUse bool) {
	l, err := lockPool(home)
	if err == nil {
		l.release()
		return 0, false
	}
	if !errors.Is(err, ErrPoolInUse) {
		return 0, false
	}
	pid, _ = readLock(home)
	return pid, true
}
