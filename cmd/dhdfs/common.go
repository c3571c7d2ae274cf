package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/dhdfs/dhdfs/cluster"
	"github.com/dhdfs/dhdfs/cluster/control"
)

func homeFlag() cli.Flag {
	// No EnvVars: settleCommon applies $DHDFS_HOME itself, because an
	// environment value urfave/cli puts into a command's flag cannot be
	// told from one given on the command line.
	return &cli.StringFlag{
		Name:        "home",
		Usage:       "the pool's home directory (metadata, config, lock)",
		DefaultText: "$DHDFS_HOME, else $XDG_DATA_HOME/dhdfs, else ~/.local/share/dhdfs; here " + cluster.DefaultHome(),
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

// settleCommonFlags makes every command of the tree settle --home and
// --verbose (settleCommon) before its action runs.
func settleCommonFlags(cmds []*cli.Command) {
	for _, cmd := range cmds {
		settleCommonFlags(cmd.Subcommands)
		if action := cmd.Action; action != nil {
			cmd.Action = func(c *cli.Context) error {
				if err := settleCommon(c); err != nil {
					return err
				}
				return action(c)
			}
		}
	}
}

// settleCommon decides the values of --home and --verbose for the command
// about to run and stores them in its own flags, where c.String("home")
// and c.Bool("verbose") find them. The flags may be given before the
// command name, after it, or both (and between `node` and its
// subcommand). urfave/cli keeps one flag set per level and answers from
// the nearest level that declares a flag, given or not: left to itself,
// the command's default (or $DHDFS_HOME) beat --home given before the
// command name, and the command acted on another pool than the one named.
// The rule here does not depend on position: a flag given on the command
// line wins over $DHDFS_HOME and the default; given at several levels,
// the one nearest the command wins (within one level, the last).
func settleCommon(c *cli.Context) error {
	home, ok := explicitFlag(c, "home", (*cli.Context).String)
	if !ok {
		home = cluster.DefaultHome()
	} else if home == "" {
		return usageError(c, "--home needs a directory")
	}
	verbose, _ := explicitFlag(c, "verbose", (*cli.Context).Bool)
	if !declares(c, "home") {
		return nil // a command without the common flags (install-helper)
	}
	if err := c.Set("home", home); err != nil {
		return err
	}
	return c.Set("verbose", strconv.FormatBool(verbose))
}

// explicitFlag returns the value of the flag name given on the command
// line at the level nearest to c's command, and whether it was given.
func explicitFlag[T any](c *cli.Context, name string, get func(*cli.Context, string) T) (T, bool) {
	for _, lc := range c.Lineage() {
		// IsSet asks the nearest level that declares the flag: ask only
		// levels that do. Their flags carry no EnvVars, so IsSet means
		// given on the command line (an alias such as -v included).
		if declares(lc, name) && lc.IsSet(name) {
			return get(lc, name), true
		}
	}
	var zero T
	return zero, false
}

// declares reports whether the command of context c declares the flag
// name itself (the root context's command holds the app's flags).
func declares(c *cli.Context, name string) bool {
	if c.Command == nil {
		return false
	}
	for _, f := range c.Command.Flags {
		if slices.Contains(f.Names(), name) {
			return true
		}
	}
	return false
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
	msg := fmt.Sprintf(format, a...)
	name := commandPath(c)
	if name == "" {
		return cli.Exit(fmt.Sprintf("%s (see 'dhdfs --help')", msg), 2)
	}
	return cli.Exit(fmt.Sprintf("%s: %s (see 'dhdfs %s --help')", name, msg, name), 2)
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
// poolPaths refuses, as a usage error, a pool path that does not start
// with '/': the pool has no current directory to resolve it against.
func poolPaths(c *cli.Context, paths ...string) error {
	for _, p := range paths {
		if !strings.HasPrefix(p, "/") {
			return usageError(c, "pool path %q must start with '/' (did you mean /%s?)", p, p)
		}
	}
	return nil
}

// sizeValue writes n as parseSize reads it, in the largest binary unit
// that divides it ("48MiB").
func sizeValue(n int64) string {
	for _, u := range []struct {
		name string
		size int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10)
}

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
	// As dd(1) reads them: K, M, G, T and KiB... are powers of 1024 (what
	// dhdfs prints), KB, MB, GB and TB powers of 1000.
	mult := map[string]int64{"": 1, "b": 1,
		"k": 1 << 10, "kib": 1 << 10, "kb": 1e3,
		"m": 1 << 20, "mib": 1 << 20, "mb": 1e6,
		"g": 1 << 30, "gib": 1 << 30, "gb": 1e9,
		"t": 1 << 40, "tib": 1 << 40, "tb": 1e12}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("size %q: unknown unit %q (use KiB, MiB, GiB or TiB; KB, MB, GB and TB are powers of 1000)", s, t[i:])
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return n * mult, nil
}

func callerOf() cluster.Caller {
	return cluster.Caller{Uid: uint32(os.Getuid()), Gid: uint32(os.Getgid())}
}
