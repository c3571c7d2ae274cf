package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/dhdfs/dhdfs/cluster"
	"github.com/dhdfs/dhdfs/cluster/control"
)

// longCommand builds a command that runs one long pool operation with
// progress, Ctrl-C to stop, and a one-line report.
func longCommand(name, usage, desc string, flags []cli.Flag, run func(c *cli.Context, m control.API, p cluster.ProgressFunc) (string, error)) *cli.Command {
	return &cli.Command{
		Name:        name,
		Usage:       usage,
		Description: desc,
		Flags:       withCommon(flags...),
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 0, "no arguments"); err != nil {
				return err
			}
			return withPool(c, func(m control.API) error {
				pr := newProgress()
				msg, err := run(c, m, pr.report)
				pr.finish()
				if msg != "" {
					fmt.Fprintln(c.App.Writer, msg)
				}
				return err
			})
		},
	}
}

func cmdHeal() *cli.Command {
	return longCommand("heal", "bring every chunk back to full replication now",
		`Makes missing copies from verified ones (riskiest chunks first), rewrites
bad copies, replaces copies on drives down longer than the mount's
--heal-after, and trims extra copies. A mounted pool heals in the
background; this runs a pass to completion. Ctrl-C stops; running it again
resumes.

Example:
   dhdfs heal`, nil,
		func(c *cli.Context, m control.API, p cluster.ProgressFunc) (string, error) {
			ctx, stop := interruptible(c)
			defer stop()
			r, err := m.Heal(ctx, p)
			return fmt.Sprintf("Checked %s: %s made, %d repaired, %d trimmed, %d waiting for drives to return, %d with no readable copy.",
				plural(r.Checked, "chunk"), plural(r.Copied, "copy"), r.Repaired, r.Trimmed, r.Waiting, r.Unrecoverable), err
		})
}

func cmdScrub() *cli.Command {
	return longCommand("scrub", "read and verify every copy on every drive, repairing bad ones",
		`Every chunk copy is read and checked against its SHA-256; corrupt or missing
copies are rewritten from good ones and copies nothing refers to are
deleted. node list shows when each drive was last fully verified.

Example:
   dhdfs scrub`, nil,
		func(c *cli.Context, m control.API, p cluster.ProgressFunc) (string, error) {
			ctx, stop := interruptible(c)
			defer stop()
			r, err := m.Scrub(ctx, p)
			return fmt.Sprintf("Scrubbed %s: %s (%s) verified, %d corrupt, %d missing, %d repaired, %s deleted.",
				plural(r.Drives, "drive"), plural(r.Verified, "copy"), humanBytes(r.Bytes), r.Corrupt, r.Missing, r.Repaired, plural(r.Orphans, "orphan")), err
		})
}

func cmdGC() *cli.Command {
	return longCommand("gc", "give the space of deleted data back to the drives' filesystems",
		`Deletes copies nothing refers to, collects chunks whose last reference
went, and compacts each drive's store so that df shows the space free.
Each drive is unavailable for a moment while its store compacts; reads
use other copies meanwhile.

Example:
   dhdfs gc`, nil,
		func(c *cli.Context, m control.API, p cluster.ProgressFunc) (string, error) {
			ctx, stop := interruptible(c)
			defer stop()
			r, err := m.GC(ctx, p)
			return fmt.Sprintf("Swept %s: %s deleted, %s collected, stores %s → %s.",
				plural(r.DrivesSwept, "drive"), plural(r.Orphans, "orphan copy"), plural(r.Collected, "chunk"), humanBytes(r.UsedBefore), humanBytes(r.UsedAfter)), err
		})
}

func cmdRebalance() *cli.Command {
	return longCommand("rebalance", "move chunks until every drive holds its share",
		`After adding a drive, moves chunks from the fullest drives to the emptiest
until each holds its share (in proportion to its capacity) within the
threshold. A new copy is always made before the old one is dropped.

Example:
   dhdfs rebalance --threshold 0.05`,
		[]cli.Flag{&cli.Float64Flag{Name: "threshold", Value: 0.1, Usage: "allowed deviation from an even share, as a fraction"}},
		func(c *cli.Context, m control.API, p cluster.ProgressFunc) (string, error) {
			ctx, stop := interruptible(c)
			defer stop()
			r, err := m.Rebalance(ctx, c.Float64("threshold"), p)
			return fmt.Sprintf("Moved %s (%s).", plural(r.Chunks, "chunk"), humanBytes(r.Bytes)), err
		})
}

func cmdNodeDrain() *cli.Command {
	return &cli.Command{
		Name:      "drain",
		Usage:     "move every chunk off a drive, keeping it readable meanwhile",
		ArgsUsage: "NAME",
		Description: `The drive takes no new chunks; each of its chunks gets its copies on other
drives before the drive's copy is deleted. Afterwards 'node remove NAME'
succeeds. Ctrl-C stops; running it again resumes.

Example:
   dhdfs node drain d2 && dhdfs node remove d2`,
		Flags: withCommon(),
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, 1, "one drive NAME"); err != nil {
				return err
			}
			return withPool(c, func(m control.API) error {
				ctx, stop := interruptible(c)
				defer stop()
				pr := newProgress()
				r, err := m.Drain(ctx, c.Args().First(), pr.report)
				pr.finish()
				fmt.Fprintf(c.App.Writer, "Moved %s (%s) off %s.\n", plural(r.Chunks, "chunk"), humanBytes(r.Bytes), c.Args().First())
				return err
			})
		},
	}
}

func cmdNodeRemove() *cli.Command {
	return &cli.Command{
		Name:      "remove",
		Usage:     "take a drive out of the pool",
		ArgsUsage: "NAME",
		Description: `Refused while the drive holds chunks: drain it first. With --force (for a
dead drive) its copies are forgotten, the command says what became
under-replicated, and the healer re-creates the copies from the others
(run 'dhdfs heal' if the pool is not mounted).

Examples:
   dhdfs node remove d2
   dhdfs node remove --force d3     # d3's disk died`,
		Flags: withCommon(&cli.BoolFlag{Name: "force", Usage: "remove even though the drive holds chunks"}),
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, 1, "one drive NAME"); err != nil {
				return err
			}
			return withPool(c, func(m control.API) error {
				r, err := m.RemoveDrive(c.Args().First(), c.Bool("force"))
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "Removed drive %s.\n", r.Name)
				if r.UnderReplicated > 0 {
					fmt.Fprintf(c.App.Writer, "%s of %s %s now under-replicated", plural(r.UnderReplicated, "chunk"), plural(r.Files, "file"), isAre(r.UnderReplicated))
					if r.Lost > 0 {
						fmt.Fprintf(c.App.Writer, " (%d have no copy left: those files are unreadable)", r.Lost)
					}
					fmt.Fprintln(c.App.Writer, "; healing re-creates the copies (dhdfs heal).")
				}
				return nil
			})
		},
	}
}

func cmdNodeReplace() *cli.Command {
	return &cli.Command{
		Name:      "replace",
		Usage:     "copy a drive's chunks straight to a new drive, then remove it",
		ArgsUsage: "OLD NEWPATH",
		Description: `Adds NEWPATH as a drive, copies every chunk of OLD to it (or elsewhere if
it fills up), and removes OLD. Ctrl-C stops; run again with the same
--name to resume.

Example:
   dhdfs node replace --name d5 d2 /mnt/disk5/dhdfs`,
		Flags: withCommon(&cli.StringFlag{Name: "name", Usage: "name of the new drive"}, reserveFlag()),
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 2, 2, "OLD and NEWPATH"); err != nil {
				return err
			}
			if err := lasting(c, "a drive", c.Args().Get(1)); err != nil {
				return err
			}
			reserve, err := reserveOf(c) // default: OLD's
			if err != nil {
				return err
			}
			return withPool(c, func(m control.API) error {
				ctx, stop := interruptible(c)
				defer stop()
				pr := newProgress()
				r, err := m.Replace(ctx, c.Args().Get(0), c.Args().Get(1), cluster.AddDriveOptions{Name: c.String("name"), Reserve: reserve}, pr.report)
				pr.finish()
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "Copied %s (%s) from %s and removed it.\n", plural(r.Chunks, "chunk"), humanBytes(r.Bytes), c.Args().Get(0))
				return nil
			})
		},
	}
}
