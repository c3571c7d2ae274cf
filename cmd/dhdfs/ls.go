package main

import (
	"fmt"
	"io/fs"
	"os/user"
	"strconv"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dhdfs/dhdfs/cluster/control"
)

func cmdLs() *cli.Command {
	return &cli.Command{
		Name:      "ls",
		Usage:     "list a directory of the pool",
		ArgsUsage: "[PATH]",
		Description: `With -l: mode, links, owner and group (by name when this machine knows
them), size and modification time, as ls -l shows them.

Examples:
   dhdfs ls
   dhdfs ls -l /docs
   dhdfs ls -lh /docs`,
		Flags: withCommon(&cli.BoolFlag{Name: "long", Aliases: []string{"l"}, Usage: "show mode, links, owner, group, size and time"},
			&cli.BoolFlag{Name: "numeric-uid-gid", Aliases: []string{"n"}, Usage: "with -l: owner and group as numbers"},
			&cli.BoolFlag{Name: "human-readable", Usage: "with -l: sizes in KiB, MiB, GiB (also -h, as ls takes it; --help is help)"},
			// Taken for the habit of ls -la: dhdfs ls hides nothing.
			&cli.BoolFlag{Name: "all", Aliases: []string{"a"}, Usage: "list names starting with '.' too (dhdfs ls always does)"}),
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 1, "at most one PATH"); err != nil {
				return err
			}
			if err := poolPaths(c, c.Args().Slice()...); err != nil {
				return err
			}
			p := c.Args().First()
			if p == "" {
				p = "/"
			}
			return withPool(c, func(m control.API) error {
				entries, err := m.List(p)
				if err != nil {
					return err
				}
				tw := newTable(c.App.Writer)
				defer tw.Flush()
				names := idNames{numeric: c.Bool("numeric-uid-gid")}
				for _, e := range entries {
					if !c.Bool("long") {
						fmt.Fprintln(tw, e.Name)
						continue
					}
					n := e.Inode
					size := strconv.FormatInt(n.Size, 10)
					if c.Bool("human-readable") {
						size = humanBytes(n.Size)
					}
					fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", modeString(n.Mode), n.Nlink, names.user(n.Uid), names.group(n.Gid), size,
						n.MtimeTime().Format(time.DateTime), e.Name)
				}
				return nil
			})
		},
	}
}

// modeString renders mode like ls -l does.
func modeString(mode uint32) string {
	m := fs.FileMode(mode & 0o777)
	switch mode & syscall.S_IFMT {
	case syscall.S_IFDIR:
		m |= fs.ModeDir
	case syscall.S_IFLNK:
		m |= fs.ModeSymlink
	case syscall.S_IFIFO:
		m |= fs.ModeNamedPipe
	case syscall.S_IFSOCK:
		m |= fs.ModeSocket
	}
	return m.String()
}

// idNames turns uids and gids into this machine's user and group names,
// as ls -l does, looking each up once; unknown ones stay numbers.
type idNames struct {
	numeric       bool
	users, groups map[uint32]string
}

func (n *idNames) user(uid uint32) string {
	return n.lookup(&n.users, uid, func(id string) (string, error) {
		u, err := user.LookupId(id)
		if err != nil {
			return "", err
		}
		return u.Username, nil
	})
}

func (n *idNames) group(gid uint32) string {
	return n.lookup(&n.groups, gid, func(id string) (string, error) {
		g, err := user.LookupGroupId(id)
		if err != nil {
			return "", err
		}
		return g.Name, nil
	})
}

func (n *idNames) lookup(cache *map[uint32]string, id uint32, find func(string) (string, error)) string {
	s := strconv.FormatUint(uint64(id), 10)
	if n.numeric {
		return s
	}
	if *cache == nil {
		*cache = map[uint32]string{}
	}
	if name, ok := (*cache)[id]; ok {
		return name
	}
	if name, err := find(s); err == nil && name != "" {
		s = name
	}
	(*cache)[id] = s
	return s
}
