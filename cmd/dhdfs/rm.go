package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/dhdfs/dhdfs/cluster"
	"github.com/dhdfs/dhdfs/cluster/control"
)

func cmdRm() *cli.Command {
	return &cli.Command{
		Name:      "rm",
		Usage:     "remove files or directories from the pool",
		ArgsUsage: "PATH...",
		Description: `An empty directory is removed without -r. Chunks no other file uses are
deleted from the drives.

Examples:
   dhdfs rm /docs/local.bin
   dhdfs rm -r /old-photos`,
		Flags: withCommon(&cli.BoolFlag{Name: "recursive", Aliases: []string{"r"}, Usage: "remove directories and their contents"}),
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, -1, "at least one PATH"); err != nil {
				return err
			}
			if err := poolPaths(c, c.Args().Slice()...); err != nil {
				return err
			}
			return withPool(c, func(m control.API) error {
				for _, p := range c.Args().Slice() {
					err := m.RemovePath(p, c.Bool("recursive"))
					if errors.Is(err, cluster.ErrNotEmpty) {
						return fmt.Errorf("%w (rm -r removes it and everything in it)", err)
					}
					if err != nil {
						return err
					}
				}
				return nil
			})
		},
	}
}
