package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/dhdfs/dhdfs/cluster"
)

func cmdUmount() *cli.Command {
	return &cli.Command{
		Name:      "umount",
		Usage:     "unmount a mounted pool, after every file is flushed",
		ArgsUsage: "DIR",
		Description: `Fails while files in DIR are open (close them first; lsof DIR lists them).
Returns once the mount process has flushed everything and exited.

Example:
   dhdfs umount /mnt/pool`,
		Flags: withCommon(),
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, 1, "one mount point DIR"); err != nil {
				return err
			}
			dir, err := filepath.Abs(c.Args().First())
			if err != nil {
				return err
			}
			home, ok := mountedHome(dir)
			if !ok {
				return fmt.Errorf("%s is not a mounted dhdfs pool", dir)
			}
			if os.Geteuid() == 0 {
				err = unix.Unmount(dir, 0)
			} else {
				var out []byte
				out, err = exec.Command(fusermount(), "-u", dir).CombinedOutput()
				if err != nil && len(out) > 0 {
					err = errors.New(strings.TrimSpace(string(out)))
				}
			}
			if errors.Is(err, unix.EBUSY) {
				return fmt.Errorf("%s is busy: close the files open in it (lsof %s) and try again", dir, dir)
			}
			if err != nil {
				return fmt.Errorf("unmount %s: %w", dir, err)
			}
			// The mount process flushes and closes the pool as it exits.
			for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				if _, inUse := cluster.PoolInUse(home); !inUse {
					return nil
				}
			}
			pid, _ := cluster.PoolInUse(home)
			return fmt.Errorf("unmounted %s, but the mount process (pid %d) is still finishing", dir, pid)
		},
	}
}

// mountedHome finds dir in /proc/mounts and returns the pool home that
// `dhdfs mount` recorded as the mount's source ("dhdfs:HOME").
func mountedHome(dir string) (string, bool) {
	f, err := os.Open("/proc/mounts")
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 || unescapeMount(fields[1]) != dir || !strings.HasPrefix(fields[2], "fuse") {
			continue
		}
		if home, ok := strings.CutPrefix(unescapeMount(fields[0]), "dhdfs:"); ok {
			return home, true
		}
	}
	return "", false
}

// unescapeMount undoes the octal escapes of /proc/mounts (\040 for space).
func unescapeMount(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%3o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
