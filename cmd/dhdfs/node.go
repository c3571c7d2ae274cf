package main

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/dhdfs/dhdfs/cluster"
	"github.com/dhdfs/dhdfs/cluster/control"
)

func cmdNode() *cli.Command {
	return &cli.Command{
		Name:  "node",
		Usage: "add, list, take offline or online, drain, remove and replace drives",
		Description: `A drive (node) is a directory, ideally one per physical disk, that holds
one chunk store. dhdfs writes an identity file into it so that a wrong or
swapped path is noticed.`,
		Flags: withCommon(),
		Subcommands: []*cli.Command{cmdNodeAdd(), cmdNodeList(), cmdNodeState("offline", true), cmdNodeState("online", false),
			cmdNodeSet(), cmdNodeDrain(), cmdNodeRemove(), cmdNodeReplace()},
	}
}

func cmdNodeAdd() *cli.Command {
	return &cli.Command{
		Name:      "add",
		Usage:     "add a directory to the pool as a drive",
		ArgsUsage: "PATH",
		Description: `PATH must be an existing, writable directory outside the pool's home and
not already a drive of this or another pool. New chunks go to it at once.

Examples:
   dhdfs node add /mnt/disk3/dhdfs
   dhdfs node add --name d3 --label enclosure=A /mnt/disk3/dhdfs
   dhdfs node add --reserve 20GiB /home/dhdfs   # a drive on the system disk`,
		Flags: withCommon(
			&cli.StringFlag{Name: "name", Usage: "drive name (default d<N>)"},
			&cli.StringSliceFlag{Name: "label", Usage: "KEY=VALUE label, repeatable: a note for you (node list shows it); placement does not read it"},
			reserveFlag(),
		),
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, 1, "one PATH"); err != nil {
				return err
			}
			if err := lasting(c, "a drive", c.Args().First()); err != nil {
				return err
			}
			labels := map[string]string{}
			for _, l := range c.StringSlice("label") {
				k, v, ok := strings.Cut(l, "=")
				if !ok || k == "" {
					return usageError(c, "label %q is not KEY=VALUE", l)
				}
				labels[k] = v
			}
			if len(labels) == 0 {
				labels = nil
			}
			reserve, err := reserveOf(c)
			if err != nil {
				return err
			}
			return withPool(c, func(m control.API) error {
				info, warnings, err := m.AddDrive(c.Args().First(), cluster.AddDriveOptions{Name: c.String("name"), Labels: labels, Reserve: reserve})
				if err != nil {
					return err
				}
				for _, w := range warnings {
					fmt.Fprintf(os.Stderr, "warning: %s\n", w)
				}
				fmt.Fprintf(c.App.Writer, "Added drive %s at %s (device %s, %s free).\n", info.Name, info.Path, info.Device, humanBytes(info.Free))
				return nil
			})
		},
	}
}

// reserveFlag is --reserve of the commands that add a drive or change one.
func reserveFlag() cli.Flag {
	return &cli.StringFlag{Name: "reserve", Usage: fmt.Sprintf("SIZE to leave free on the drive's filesystem, at least %dMiB (default %dMiB)",
		cluster.MinReserve>>20, cluster.DefaultReserve>>20)}
}

// reserveOf returns --reserve in bytes, 0 when not given.
func reserveOf(c *cli.Context) (int64, error) {
	if !c.IsSet("reserve") {
		return 0, nil
	}
	n, err := parseSize(c.String("reserve"))
	if err != nil {
		return 0, usageError(c, "--reserve %s: %v", c.String("reserve"), err)
	}
	if n < cluster.MinReserve {
		return 0, usageError(c, "--reserve %s: at least %dMiB, which a drive needs to compact its store", c.String("reserve"), cluster.MinReserve>>20)
	}
	return n, nil
}

func cmdNodeSet() *cli.Command {
	return &cli.Command{
		Name:      "set",
		Usage:     "change a drive's settings",
		ArgsUsage: "NAME",
		Description: `--reserve is what dhdfs leaves free on the drive's filesystem, for the
drive's own store and for whatever else shares that filesystem. df and
status count it as used. A larger reserve takes effect at once: new chunks
go to other drives, and dead space on the drive is given back if it is now
short; chunks already there stay (node drain moves them).

Example:
   dhdfs node set d1 --reserve 10GiB`,
		Flags: withCommon(reserveFlag()),
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, 1, "one drive NAME"); err != nil {
				return err
			}
			if !c.IsSet("reserve") {
				return usageError(c, "nothing to change: give --reserve SIZE")
			}
			reserve, err := reserveOf(c)
			if err != nil {
				return err
			}
			return withPool(c, func(m control.API) error {
				info, err := m.SetDriveReserve(c.Args().First(), reserve)
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "Drive %s keeps %s free on its filesystem.\n", info.Name, humanBytes(info.Reserve))
				return nil
			})
		},
	}
}

func cmdNodeList() *cli.Command {
	return &cli.Command{
		Name:  "list",
		Usage: "list the pool's drives with state, chunks and space",
		Description: `States: online (in use), offline (taken offline by you), failed (could not
be opened or returned an I/O error; REASON says why).

Examples:
   dhdfs node list
   dhdfs node list --json | jq '.[] | select(.state != "online")'`,
		Flags: withCommon(jsonFlag()),
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 0, "no arguments"); err != nil {
				return err
			}
			return withPool(c, func(m control.API) error {
				drives, err := m.Drives()
				if err != nil {
					return err
				}
				if c.Bool("json") {
					if drives == nil {
						drives = []cluster.DriveInfo{}
					}
					return printJSON(c.App.Writer, drives)
				}
				printDrives(c, drives)
				return nil
			})
		},
	}
}

func printDrives(c *cli.Context, drives []cluster.DriveInfo) {
	tw := newTable(c.App.Writer)
	fmt.Fprintln(tw, "NAME\tSTATE\tCHUNKS\tUSED\tFREE\tRESERVE\tDEVICE\tVERIFIED\tPATH\tLABELS\tID")
	for _, d := range drives {
		var labels []string
		for k, v := range d.Labels {
			labels = append(labels, k+"="+v)
		}
		sort.Strings(labels)
		l := strings.Join(labels, ",")
		if l == "" {
			l = "-"
		}
		verified := "never"
		if d.Verified != nil {
			verified = d.Verified.Local().Format("2006-01-02 15:04")
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Name, d.State, d.Chunks,
			humanBytes(d.Used), humanBytes(d.Free), humanBytes(d.Reserve), d.Device, verified, d.Path, l, d.ID[:8])
	}
	tw.Flush()
	for _, d := range drives {
		if d.Reason != "" {
			fmt.Fprintf(c.App.Writer, "%s: %s\n", d.Name, d.Reason)
		}
	}
}

func cmdNodeState(name string, offline bool) *cli.Command {
	usage := "bring a drive back online"
	desc := `The drive is opened and checked again, and takes reads and new chunks.

Example:
   dhdfs node online d1`
	if offline {
		usage = "take a drive offline, as if unplugged"
		desc = `dhdfs stops reading and writing the drive; reads fall back to other copies.
The choice persists until 'dhdfs node online'.

Example:
   dhdfs node offline d1`
	}
	return &cli.Command{
		Name:        name,
		Usage:       usage,
		ArgsUsage:   "NAME",
		Description: desc,
		Flags:       withCommon(),
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, 1, "one drive NAME"); err != nil {
				return err
			}
			return withPool(c, func(m control.API) error {
				info, err := m.SetDriveOffline(c.Args().First(), offline)
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "Drive %s is %s.\n", info.Name, info.State)
				if info.Reason != "" {
					return fmt.Errorf("drive %s: %s", info.Name, info.Reason)
				}
				return nil
			})
		},
	}
}

// lasting refuses a location of what lives only in one process's memory
// (mem://, for tests): a pool's metadata and drives must outlive it.
func lasting(c *cli.Context, what, location string) error {
	if strings.HasPrefix(location, "mem://") {
		return usageError(c, "%s %s would live only in this process's memory (mem:// is for tests)", what, location)
	}
	return nil
}
