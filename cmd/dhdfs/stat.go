package main

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dhdfs/dhdfs/cluster"
	"github.com/dhdfs/dhdfs/cluster/control"
)

func cmdStat() *cli.Command {
	return &cli.Command{
		Name:      "stat",
		Usage:     "show a file's attributes, replication and chunk locations",
		ArgsUsage: "PATH",
		Description: `Examples:
   dhdfs stat /docs/local.bin
   dhdfs stat --chunks /docs/local.bin     # every chunk and the drives holding it
   dhdfs stat --json --chunks /docs/local.bin`,
		Flags: withCommon(jsonFlag(), &cli.BoolFlag{Name: "chunks", Usage: "list each chunk and the drives holding it"}),
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, 1, "one PATH"); err != nil {
				return err
			}
			if err := poolPaths(c, c.Args().Slice()...); err != nil {
				return err
			}
			return withPool(c, func(m control.API) error {
				st, err := m.StatPath(c.Args().First(), c.Bool("chunks"))
				if err != nil {
					return err
				}
				n := st.Inode
				if c.Bool("json") {
					out := map[string]any{"path": c.Args().First(), "inode": n.Ino, "mode": modeString(n.Mode),
						"uid": n.Uid, "gid": n.Gid, "nlink": n.Nlink, "size": n.Size,
						"mtime": n.MtimeTime().UTC().Format(time.RFC3339Nano), "replicas": st.Replicas}
					if n.IsSymlink() {
						out["target"] = n.Target
					}
					if c.Bool("chunks") {
						out["chunks"] = st.Chunks
					}
					return printJSON(c.App.Writer, out)
				}
				w := c.App.Writer
				fmt.Fprintf(w, "Path:     %s\n", c.Args().First())
				fmt.Fprintf(w, "Inode:    %d\n", n.Ino)
				fmt.Fprintf(w, "Mode:     %s  Links: %d  Uid: %d  Gid: %d\n", modeString(n.Mode), n.Nlink, n.Uid, n.Gid)
				fmt.Fprintf(w, "Size:     %d (%s)\n", n.Size, humanBytes(n.Size))
				fmt.Fprintf(w, "Modified: %s\n", n.MtimeTime().Format(time.RFC3339))
				fmt.Fprintf(w, "Replicas: %d\n", st.Replicas)
				if n.IsSymlink() {
					fmt.Fprintf(w, "Target:   %s\n", n.Target)
				}
				if c.Bool("chunks") {
					tw := newTable(w)
					fmt.Fprintln(tw, "INDEX\tCHUNK\tSIZE\tCOPIES\tDRIVES")
					for _, l := range st.Chunks {
						drives := slices.Clone(l.Drives)
						for i, st := range l.States {
							if st != cluster.StateOnline && i < len(drives) {
								drives[i] += "(" + string(st) + ")" // a copy not read now
							}
						}
						fmt.Fprintf(tw, "%d\t%s\t%d\t%d/%d\t%s\n", l.Index, l.ID[:12], l.Size, l.Online, l.Want, strings.Join(drives, ","))
					}
					tw.Flush()
				}
				return nil
			})
		},
	}
}
