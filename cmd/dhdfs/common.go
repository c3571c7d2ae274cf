package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/dhdfs/dhdfs/cluster"
	"github.com/dhdfs/dhdfs/cluster/control"
)

func homeFlag() cli.Flag {
	return &cli.StringFlag{
		Name:    "home",
		Usage:   "the pool's home directory (metadata, config, lock)",
		EnvVars: []string{"DHDFS_HOME"},
		Value:   cluster.DefaultHome(),
	}
}

func verboseFlag() cli.Flag {
	return &cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "log what dhdfs does to stderr"}
}

func jsonFlag() cli.Flag {
	return &cli.BoolFlag{Name: "json", Usage: "print JSON instead of a table"}
}

// withCommon adds the flags every command accepts after its name.
func withCommon(flags ...cli.Flag) []cli.Flag {
	return append([]cli.Flag{homeFlag(), verboseFlag()}, flags...)
}

func logger(c *cli.Context) *slog.Logger {
	level := slog.LevelWarn
	if c.Bool("verbose") {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// withPool runs fn on the pool named by --home: through the running mount
// if there is one, else opened directly and closed after fn.
func withPool(c *cli.Context, fn func(m control.API) error) error {
	m, err := control.Open(c.String("home"), cluster.Options{Logger: logger(c)})
	if err != nil {
		return err
	}
	err = fn(m)
	if cerr := m.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close pool: %w", cerr)
	}
	return err
}

// usageError reports wrong arguments with exit status 2.
func usageError(c *cli.Context, format string, a ...any) error {
	return cli.Exit(fmt.Sprintf("%s: %s (see 'dhdfs %s --help')", c.Command.FullName(), fmt.Sprintf(format, a...), c.Command.FullName()), 2)
}

func needArgs(c *cli.Context, min, max int, names string) error {
	n := c.NArg()
	if n < min || (max >= 0 && n > max) {
		return usageError(c, "expected %s", names)
	}
	return nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// humanBytes formats n in binary units: "1.5 GiB".
func humanBytes(n int64) string {
	if n < 0 {
		return "-"
	}
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	s := strconv.FormatFloat(v, 'f', 1, 64)
	s = strings.TrimSuffix(s, ".0")
	return s + " " + "KMGTPE"[exp:exp+1] + "iB"
}

// parseSize reads sizes like 1048576, 512KiB, 1MiB, 4M, 2GB (binary units
// either way: storage sizes here are always powers of 1024).
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := len(t)
	for i > 0 && (t[i-1] < '0' || t[i-1] > '9') {
		i--
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q: want a number with an optional unit such as 512KiB or 1MiB", s)
	}
	mult := map[string]int64{"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
		"m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("size %q: unknown unit %q", s, unit)
	}
	return n * mult, nil
}

func callerOf() cluster.Caller {
	return cluster.Caller{Uid: uint32(os.Getuid()), Gid: uint32(os.Getgid())}
}
