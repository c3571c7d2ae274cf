package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"
)

// helperName is the name mount(8) runs for `mount -t fuse.dhdfs`.
const helperName = "mount.fuse.dhdfs"

func cmdInstallHelper() *cli.Command {
	return &cli.Command{
		Name:  "install-helper",
		Usage: "let mount(8) and /etc/fstab mount pools (mount -t fuse.dhdfs HOME DIR)",
		Description: `Links DIR/mount.fuse.dhdfs (default /sbin) to this dhdfs binary. mount(8)
then runs it for filesystems of type fuse.dhdfs, with the pool's home as
the source. An /etc/fstab line:

   /var/lib/dhdfs  /mnt/pool  fuse.dhdfs  defaults,allow_other,_netdev  0  0

The options are those of dhdfs mount -o (ro, noatime, nodiratime,
relatime, strictatime, read_ahead=SIZE, ...).

Example:
   sudo dhdfs install-helper`,
		Flags: []cli.Flag{&cli.StringFlag{Name: "dir", Value: "/sbin", Usage: "where to install the helper"}},
		Action: func(c *cli.Context) error {
			self, err := os.Executable()
			if err != nil {
				return err
			}
			if self, err = filepath.EvalSymlinks(self); err != nil {
				return err
			}
			link := filepath.Join(c.String("dir"), helperName)
			tmp := link + ".tmp"
			os.Remove(tmp)
			if err := os.Symlink(self, tmp); err != nil {
				return fmt.Errorf("install helper: %w", err)
			}
			if err := os.Rename(tmp, link); err != nil {
				os.Remove(tmp)
				return fmt.Errorf("install helper: %w", err)
			}
			fmt.Fprintf(c.App.Writer, "Installed %s -> %s\n", link, self)
			return nil
		},
	}
}

// helperArgs turns mount(8)'s call "mount.fuse.dhdfs SOURCE DIR [-sfnv] [-o
// OPTS]" into the arguments of `dhdfs mount --daemon`.
func helperArgs(args []string) ([]string, error) {
	var pos []string
	var opts string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-o" && i+1 < len(args):
			opts = strings.TrimPrefix(opts+","+args[i+1], ",")
			i++
		case strings.HasPrefix(a, "-o"):
			opts = strings.TrimPrefix(opts+","+a[2:], ",")
		case a == "-s" || a == "-f" || a == "-n" || a == "-v":
			// sloppy, fake, no-mtab, verbose: nothing to do for FUSE
		case strings.HasPrefix(a, "-"):
			return nil, fmt.Errorf("%s: unknown flag %s", helperName, a)
		default:
			pos = append(pos, a)
		}
	}
	if len(pos) != 2 {
		return nil, fmt.Errorf("usage: %s HOME DIR [-o OPTIONS]", helperName)
	}
	out := []string{"dhdfs", "mount", "--daemon", "--home", pos[0]}
	if opts != "" {
		out = append(out, "-o", opts)
	}
	return append(out, pos[1]), nil
}
