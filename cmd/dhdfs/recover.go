package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/dhdfs/dhdfs/cluster"
)

func cmdRecover() *cli.Command {
	return &cli.Command{
		Name:      "recover",
		Usage:     "rebuild a lost home from the metadata mirror on any one drive",
		ArgsUsage: " ",
		Description: `Every drive holds a mirror of the pool's metadata (DRIVE/meta-mirror),
brought up to date every --mirror-every (5s) while mounted and at every
clean unmount or command. When home is lost, this rebuilds it in --home
(which must not hold a pool) from the drive given with --from. The other
drives are found at their recorded paths. Changes made after the drive's
last mirror update are lost (at most --mirror-every of them after a crash,
none after a clean unmount); their data is collected as orphans. The
rebuilt pool is then checked and repaired as by dhdfs fsck --repair.

Example:
   dhdfs recover --from /mnt/disk2/dhdfs --home /var/lib/dhdfs-new`,
		Flags: withCommon(jsonFlag(), &cli.StringFlag{Name: "from", Required: true, Usage: "a drive of the pool (its directory)"}),
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 0, "no arguments"); err != nil {
				return err
			}
			ctx, stop := interruptible(c)
			defer stop()
			pr := newProgress()
			rep, err := cluster.RebuildHome(ctx, c.String("from"), c.String("home"), cluster.Options{Logger: logger(c)}, pr.report)
			pr.finish()
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, rep)
			}
			fmt.Fprintf(c.App.Writer, "Rebuilt pool %s in %s from drive %s: %d metadata segments, the last written %s.\n",
				rep.Pool[:min(8, len(rep.Pool))], c.String("home"), rep.Drive, rep.Segments, rep.Through.Local().Format("2006-01-02 15:04:05"))
			for _, p := range rep.Fsck.Problems {
				fmt.Fprintf(c.App.Writer, "%s: %s (repaired: %v)\n", p.Kind, p.What, p.Repaired)
			}
			fmt.Fprintf(c.App.Writer, "Checked %d inodes and %d chunks: %d problems, %d left; %d chunks under-replicated (dhdfs heal).\n",
				rep.Fsck.Inodes, rep.Fsck.Chunks, len(rep.Fsck.Problems), rep.Fsck.Unrepaired(), rep.Fsck.UnderReplicated)
			if n := rep.Fsck.Unrepaired(); n > 0 {
				return cli.Exit(fmt.Sprintf("%d problems left after the rebuild", n), 1)
			}
			return nil
		},
	}
}
