package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/dhdfs/dhdfs/cluster"
)

func cmdFsck() *cli.Command {
	return &cli.Command{
		Name:  "fsck",
		Usage: "check the pool's metadata against itself and the drives (--repair fixes)",
		Description: `Checks names against inodes, link counts, every file's chunks against the
chunk records, reference counts, and each record's copies against what the
drives hold. Each problem is printed on one line. With --repair, dangling
names are removed, counts set to what was counted, files with no name are
given one in /lost+found, records stop naming copies that are gone (heal
then makes new ones) and copies nothing names are deleted. A chunk with no
copy left cannot be repaired; its file is named.

The pool must not be mounted. Exit status: 0 when the pool is clean or
every problem was repaired, 1 when problems remain.

Examples:
   dhdfs fsck
   dhdfs fsck --repair`,
		Flags: withCommon(jsonFlag(), &cli.BoolFlag{Name: "repair", Usage: "fix what can be fixed"}),
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 0, "no arguments"); err != nil {
				return err
			}
			// Directly, never through a mount's socket: fsck needs the pool
			// to itself, and opening it finishes what a crash interrupted.
			m, err := cluster.Open(c.String("home"), cluster.Options{Logger: logger(c)})
			if errors.Is(err, cluster.ErrPoolInUse) {
				return fmt.Errorf("%w; fsck needs it unmounted (dhdfs umount)", err)
			}
			if err != nil {
				return err
			}
			ctx, stop := interruptible(c)
			defer stop()
			pr := newProgress()
			rep, err := m.Fsck(ctx, c.Bool("repair"), pr.report)
			pr.finish()
			if cerr := m.Close(); err == nil && cerr != nil {
				err = fmt.Errorf("close pool: %w", cerr)
			}
			if err != nil {
				return err
			}
			if c.Bool("json") {
				if err := printJSON(c.App.Writer, rep); err != nil {
					return err
				}
			} else {
				for _, p := range rep.Problems {
					state := ""
					if p.Repaired {
						state = " (repaired)"
					}
					fmt.Fprintf(c.App.Writer, "%s: %s%s\n", p.Kind, p.What, state)
				}
				fmt.Fprintf(c.App.Writer, "Checked %s, %s, %s, %s: %s, %d repaired; %s under-replicated.\n",
					plural(rep.Inodes, "inode"), plural(rep.Entries, "name"), plural(rep.Chunks, "chunk"), plural(rep.Copies, "copy"),
					plural(len(rep.Problems), "problem"), len(rep.Problems)-rep.Unrepaired(), plural(rep.UnderReplicated, "chunk"))
			}
			if n := rep.Unrepaired(); n > 0 {
				hint := " (dhdfs fsck --repair fixes what it can)"
				if c.Bool("repair") {
					hint = ""
				}
				return cli.Exit(fmt.Sprintf("%s left%s", plural(n, "problem"), hint), 1)
			}
			return nil
		},
	}
}
