package fs

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/dhdfs/dhdfs/cluster/mountinfo"
)

// bdiPath is the sysfs file holding the read-ahead, in KiB, of the FUSE
// mount at dir (absolute, free of symlinks).
func bdiPath(dir string) (string, error) {
	mounts, err := mountinfo.Read()
	if err != nil {
		return "", err
	}
	m, ok := mountinfo.Innermost(mounts, dir)
	if !ok || m.MountPoint != dir || !strings.HasPrefix(m.FSType, "fuse") {
		return "", fmt.Errorf("no FUSE mount at %s in the mount table", dir)
	}
	return filepath.Join("/sys/class/bdi", m.Device, "read_ahead_kb"), nil
}

// ReadAhead returns the kernel's read-ahead for the FUSE mount at dir.
func ReadAhead(dir string) (int, error) {
	p, err := bdiPath(dir)
	if err != nil {
		return 0, err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, fmt.Errorf("read-ahead of %s: %w", dir, err)
	}
	kb, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("read-ahead of %s: %s: %w", dir, p, err)
	}
	return kb << 10, nil
}

// setReadAhead sets the kernel's read-ahead for the FUSE mount at dir to
// bytes, rounded down to whole KiB. The kernel reads ahead of a
// sequential reader by its FUSE mount's backing-device setting, 128 KiB
// unless changed, and never asks for more in one request: a cold
// sequential read then costs one round trip to the daemon per 128 KiB,
// which on a small machine is most of its time. A read-ahead of a whole
// chunk (the kernel's largest FUSE request, 1 MiB) asks for a chunk per
// round trip. It lives in sysfs, as for any block device, so only root
// may change it (mergerfs's readahead option does the same).
func setReadAhead(dir string, bytes int) error {
	p, err := bdiPath(dir)
	if err != nil {
		return err
	}
	if err := os.WriteFile(p, []byte(strconv.Itoa(bytes>>10)), 0); err != nil {
		return fmt.Errorf("set read-ahead of %s: %w", dir, err)
	}
	return nil
}
