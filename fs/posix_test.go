package fs

import (
	"sort"
	"testing"

	"github.com/hanwen/go-fuse/v2/posixtest"

	"github.com/dhdfs/dhdfs/cluster"
)

// go-fuse's POSIX suite against a real mount.
func TestPosix(t *testing.T) {
	skip := map[string]string{
		// It expects two descriptors of one process to be distinct lock
		// owners (go-fuse's loopback uses OFD locks). dhdfs leaves POSIX
		// locks to the kernel, which, as on ext4, treats one process as one
		// owner.
		"FcntlFlockLocksFile": "per-descriptor lock owners are not implemented",
	}
	// Tests run on a mount configured differently, and why.
	configs := map[string]func(*Config){
		// It expects open(O_RDONLY) without a read to leave the access
		// time alone. dhdfs records reads at open, because reads the
		// kernel serves from its page cache never reach it; with
		// noatime the rest of the test still runs.
		"FstatDeleted": func(c *Config) { c.Atime = cluster.AtimeNever },
	}
	var names []string
	for name := range posixtest.All {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			if why, ok := skip[name]; ok {
				t.Skip(why)
			}
			edit := configs[name]
			if edit == nil {
				edit = func(*Config) {}
			}
			tm := mountPoolWith(t, 3, cluster.MinChunkSize, edit)
			posixtest.All[name](t, tm.mnt)
		})
	}
}
