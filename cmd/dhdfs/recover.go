package main

import (
	"errors"
	"fmt"
	"path/filepath"

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
from the drive given with --from. The other drives are found at their
recorded paths. Changes made after the drive's last mirror update are
lost (at most --mirror-every of them after a crash, none after a clean
unmount); their data is collected as orphans. The rebuilt pool is then
checked and repaired as by dhdfs fsck --repair.

A home that still holds the pool (its metadata damaged, say) is refused
unless --force is given: then its metadata directory is moved aside to
HOME/meta.damaged-TIMESTAMP (with pool.json and mirror.json), not deleted,
and home is rebuilt. --force still refuses a mounted pool and a drive of
another pool than the one home holds.

Examples:
   dhdfs recover --from /mnt/disk2/dhdfs --home /var/lib/dhdfs-new
   dhdfs recover --from /mnt/disk2/dhdfs --home /var/lib/dhdfs --force   # home damaged`,
		Flags: withCommon(jsonFlag(),
			&cli.StringFlag{Name: "from", Required: true, Usage: "a drive of the pool (its directory)"},
			&cli.BoolFlag{Name: "force", Usage: "replace the pool home holds; its old metadata is moved aside, not deleted"},
		),
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 0, "no arguments"); err != nil {
				return err
			}
			ctx, stop := interruptible(c)
			defer stop()
			pr := newProgress()
			home, rebuild := c.String("home"), cluster.RebuildHome
			if c.Bool("force") {
				rebuild = cluster.ReplaceHome
			}
			rep, err := rebuild(ctx, c.String("from"), home, cluster.Options{Logger: logger(c)}, pr.report)
			pr.finish()
			if rep.MovedAside != "" && !c.Bool("json") {
				// Said even if the rebuild then failed: the user must know
				// where the old metadata went.
				fmt.Fprintf(c.App.Writer, "Moved the old metadata of %s aside to %s.\n", home, rep.MovedAside)
			}
			if errors.Is(err, cluster.ErrPoolExists) {
				return fmt.Errorf("%w; to replace its metadata with the mirror on %s, add --force (the old metadata is moved aside to %s, not deleted)",
					err, c.String("from"), filepath.Join(home, "meta.damaged-TIMESTAMP"))
			}
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(c.App.Writer, rep)
			}
			fmt.Fprintf(c.App.Writer, "Rebuilt pool %s in %s from drive %s: %d metadata segments, the last written %s.\n",
				rep.Pool[:min(8, len(rep.Pool))], home, rep.Drive, rep.Segments, rep.Through.Local().Format("2006-01-02 15:04:05"))
			for _, p := range rep.Fsck.Problems {
				fmt.Fprintf(c.App.Writer, "%s: %s (repaired: %v)\n", p.Kind, p.What, p.Repaired)
			}
			fmt.Fprintf(c.App.Writer, "Checked %s and %s: %s, %d left; %s under-replicated (dhdfs heal).\n",
				plural(rep.Fsck.Inodes, "inode"), plural(rep.Fsck.Chunks, "chunk"), plural(len(rep.Fsck.Problems), "problem"), rep.Fsck.Unrepaired(), plural(rep.Fsck.UnderReplicated, "chunk"))
			if n := rep.Fsck.Unrepaired(); n > 0 {
				return cli.Exit(fmt.Sprintf("%s left after the rebuild", plural(n, "problem")), 1)
			}
			return nil
		},
	}
}
