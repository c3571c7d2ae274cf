// Package mountinfo reads the kernel's table of mounts, /proc/self/mountinfo
// (proc(5)): which filesystem is mounted where, and the device number the
// kernel gave it. dhdfs uses it to refuse drives inside its own mounts and
// to find a mount's read-ahead setting in /sys/class/bdi.
package mountinfo

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Mount is one line of the table.
type Mount struct {
	// Device is the "major:minor" number of the mounted filesystem, also
	// the name of its entry in /sys/class/bdi for FUSE mounts.
	Device string
	// MountPoint is where it is mounted, unescaped.
	MountPoint string
	// FSType is the filesystem type, e.g. "ext4" or "fuse.dhdfs".
	FSType string
	// Options are the mount's options (ro, noatime, nodev, …) followed by
	// its filesystem's (for FUSE: default_permissions, allow_other, …),
	// as /proc/mounts shows them together.
	Options []string
}

// Read returns the mounts of the calling process's mount namespace, in the
// table's order: a mount shadows earlier ones at or below its mount point.
func Read() ([]Mount, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	return Parse(string(b)), nil
}

// Parse reads the text of a mountinfo file, skipping malformed lines.
func Parse(text string) []Mount {
	var out []Mount
	for _, line := range strings.Split(text, "\n") {
		// Fields: id parent major:minor root mountpoint options
		// [optional fields...] - fstype source superoptions
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 1 || !strings.Contains(f[2], ":") {
			continue
		}
		m := Mount{Device: f[2], MountPoint: unescape(f[4]), FSType: g[0]}
		if len(f) > 5 {
			m.Options = strings.Split(f[5], ",")
		}
		if len(g) > 2 {
			m.Options = append(m.Options, strings.Split(g[2], ",")...)
		}
		out = append(out, m)
	}
	return out
}

// At returns the mount whose mount point is dir, the last one if several
// are stacked there.
func At(mounts []Mount, dir string) (Mount, bool) {
	for i := len(mounts) - 1; i >= 0; i-- {
		if mounts[i].MountPoint == dir {
			return mounts[i], true
		}
	}
	return Mount{}, false
}

// Innermost returns the mount that holds path (absolute and free of
// symlinks). A mount hides the earlier ones at or below its mount point,
// so the answer is the deepest mount point above path that no later mount
// covers.
func Innermost(mounts []Mount, path string) (Mount, bool) {
	visible := make([]Mount, 0, len(mounts))
	for _, m := range mounts {
		visible = slices.DeleteFunc(visible, func(v Mount) bool { return within(v.MountPoint, m.MountPoint) })
		visible = append(visible, m)
	}
	var best Mount
	found := false
	for _, m := range visible {
		if within(path, m.MountPoint) && (!found || len(m.MountPoint) > len(best.MountPoint)) {
			best, found = m, true
		}
	}
	return best, found
}

// within reports whether path is dir or lies below it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// unescape undoes the octal escapes (\040 for a space) the kernel writes
// for spaces, tabs, newlines and backslashes in paths.
func unescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
