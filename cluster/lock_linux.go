package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// poolLock is an exclusive flock on HOME/lock holding the owner's pid. The
// kernel drops it when the process dies, so a killed process never leaves
// a stale lock behind.
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
			b, _ := os.ReadFile(path)
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
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

func (l *poolLock) release() {
	if l == nil || l.f == nil {
		return
	}
	_ = l.f.Truncate(0)
	_ = l.f.Close() // closing drops the flock
	l.f = nil
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
	b, _ := os.ReadFile(filepath.Join(home, lockFile))
	pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	return pid, true
}
