package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/dhdfs/dhdfs/cluster"
	"github.com/dhdfs/dhdfs/cluster/control"
)

func cmdStatus() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show the pool's health: drives, capacity, files, chunk redundancy",
		Description: `Capacity counts each filesystem once, however many drives share it; usable
is raw free space divided by the replication factor. A chunk is
under-replicated when fewer of its copies are on online drives than its
file asks for, and lost when none is.

Examples:
   dhdfs status
   dhdfs status --json`,
		Flags: withCommon(jsonFlag()),
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 0, "no arguments"); err != nil {
				return err
			}
			return withPool(c, func(m control.API) error {
				st, err := m.Status()
				if err != nil {
					return err
				}
				if c.Bool("json") {
					return printJSON(c.App.Writer, st)
				}
				w := c.App.Writer
				health := "healthy"
				switch {
				case st.Lost > 0:
					health = fmt.Sprintf("DATA UNAVAILABLE: %s without a copy on an online drive", plural(st.Lost, "chunk"))
				case st.UnderReplicated > 0:
					health = fmt.Sprintf("degraded: %s under-replicated", plural(st.UnderReplicated, "chunk"))
				case st.Drives[cluster.StateOnline] == 0:
					health = "no drive online"
				}
				fmt.Fprintf(w, "Pool:      %s (%s)\n", st.PoolID[:8], st.Home)
				if st.Mount != nil {
					fmt.Fprintf(w, "Mounted:   at %s by pid %d\n", st.Mount.Dir, st.Mount.Pid)
				} else {
					fmt.Fprintf(w, "Mounted:   no\n")
				}
				fmt.Fprintf(w, "Health:    %s\n", health)
				fmt.Fprintf(w, "Drives:    %d online, %d draining, %d offline, %d failed\n", st.Drives[cluster.StateOnline],
					st.Drives[cluster.StateDraining], st.Drives[cluster.StateOffline], st.Drives[cluster.StateFailed])
				fmt.Fprintf(w, "Capacity:  %s raw, %s raw free, %s usable free (replicas %d)\n", humanBytes(st.RawTotal), humanBytes(st.RawFree), humanBytes(st.UsableFree), st.Replicas)
				fmt.Fprintf(w, "Files:     %s, %s, %s\n", plural(st.Files, "file"), plural(st.Dirs, "directory"), humanBytes(st.FileBytes))
				if st.OnlineCopies == st.Copies {
					fmt.Fprintf(w, "Chunks:    %d (%s), %d copies, %s on drives\n", st.Chunks, humanBytes(st.ChunkBytes), st.Copies, humanBytes(st.StoreUsed))
				} else {
					// The stores of drives not online cannot be measured:
					// count bytes and copies on the same drives.
					fmt.Fprintf(w, "Chunks:    %d (%s), %d copies, %d of them on online drives (%s)\n", st.Chunks, humanBytes(st.ChunkBytes),
						st.Copies, st.OnlineCopies, humanBytes(st.StoreUsed))
				}
				fmt.Fprintf(w, "Redundancy: %d under-replicated, %d lost, %d with copies sharing a device\n", st.UnderReplicated, st.Lost, st.SharedDevice)
				var risky []string
				for name, n := range st.AtRisk {
					if n > 0 {
						risky = append(risky, fmt.Sprintf("%s (%s)", name, plural(n, "file")))
					}
				}
				sort.Strings(risky)
				if len(risky) > 0 {
					fmt.Fprintf(w, "At risk:   losing one of these drives now would make files unreadable: %s\n", strings.Join(risky, ", "))
				}
				return nil
			})
		},
	}
}

// isAre is the verb for n things.
func isAre[N ~int | ~int32 | ~int64 | ~uint32 | ~uint64](n N) string {
	if n == 1 {
		return "is"
	}
	return "are"
}

// plural counts n of word: "1 chunk", "2 chunks", "3 copies".
func plural[N ~int | ~int32 | ~int64 | ~uint32 | ~uint64](n N, word string) string {
	if n == 1 {
		return "1 " + word
	}
	if strings.HasSuffix(word, "y") {
		return fmt.Sprintf("%d %sies", n, word[:len(word)-1])
	}
	return fmt.Sprintf("%d %ss", n, word)
}
