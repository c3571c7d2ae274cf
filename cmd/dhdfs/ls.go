package main

import (
	"fmt"
	"io/fs"
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
		Description: `Examples:
   dhdfs ls
   dhdfs ls -l /docs`,
		Flags: withCommon(&cli.BoolFlag{Name: "long", Aliases: []string{"l"}, Usage: "show mode, links, size and time"}),
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 1, "at most one PATH"); err != nil {
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
				for _, e := range entries {
					if !c.Bool("long") {
						fmt.Fprintln(tw, e.Name)
						continue
					}
					n := e.Inode
					fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%s\n", modeString(n.Mode), n.Nlink, n.Uid, n.Gid, n.Size,
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
