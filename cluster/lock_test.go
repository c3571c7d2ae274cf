package cluster

import (
	"bytes"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A holder whose recorded mount is gone is waited for; one that never
// mounted is refused at once; the wait is bounded.
func TestLockWaitsForUnmountedHolder(t *testing.T) {
	home := t.TempDir()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))

	held, err := lockPool(home)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := lockPoolWait(home, log); !errors.Is(err, ErrPoolInUse) || time.Since(start) > time.Second {
		t.Fatalf("holder without a mount: %v after %v, want ErrPoolInUse at once", err, time.Since(start))
	}

	held.setMountPoint(filepath.Join(home, "unmounted"))
	if pid, dir := readLock(home); pid == 0 || dir != filepath.Join(home, "unmounted") {
		t.Fatalf("lock file: pid %d, mount point %q", pid, dir)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		held.release()
	}()
	start = time.Now()
	l, err := lockPoolWait(home, log)
	if err != nil || time.Since(start) < 200*time.Millisecond {
		t.Fatalf("holder unmounted: %v after %v, want the lock once it is released", err, time.Since(start))
	}
	if n := strings.Count(logs.String(), "is finishing: waiting for it"); n != 1 {
		t.Fatalf("logged %d waiting lines, want 1:\n%s", n, logs.String())
	}

	l.setMountPoint(filepath.Join(home, "unmounted"))
	defer func(d time.Duration) { unmountWait = d }(unmountWait)
	unmountWait = 100 * time.Millisecond
	if _, err := lockPoolWait(home, nil); !errors.Is(err, ErrPoolInUse) || !strings.Contains(err.Error(), "still finishing") {
		t.Fatalf("holder that never lets go: %v", err)
	}
	l.release()
}
