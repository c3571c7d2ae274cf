package main

import (
	"github.com/urfave/cli/v2"

	"github.com/dhdfs/dhdfs/cluster/control"
)

func cmdMkdir() *cli.Command {
	return &cli.Command{
		Name:      "mkdir",
		Usage:     "create directories in the pool",
		ArgsUsage: "PATH...",
		Description: `Examples:
   dhdfs mkdir /docs
   dhdfs mkdir -p /photos/2026/11`,
		Flags: withCommon(&cli.BoolFlag{Name: "parents", Aliases: []string{"p"}, Usage: "create missing parents; an existing directory is fine"}),
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, -1, "at least one PATH"); err != nil {
				return err
			}
			if err := poolPaths(c, c.Args().Slice()...); err != nil {
				return err
			}
			return withPool(c, func(m control.API) error {
				for _, p := range c.Args().Slice() {
					if _, err := m.MkdirPath(p, c.Bool("parents"), 0o755, callerOf()); err != nil {
						return err
					}
				}
				return nil
			})
		},
	}
}
