package main

import (
	"fmt"
	"runtime"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/dhdfs/dhdfs/cluster"
)

// Command-line conventions every command shares: usage errors are one
// line with a hint and exit status 2, mistyped commands and flags get a
// suggestion, flags may follow arguments, and the build says what it is.

// version describes the build (cluster.BuildVersion).
func version() string { return cluster.BuildVersion() }

func cmdVersion() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print dhdfs's version, commit and Go version",
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 0, "no arguments"); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "dhdfs %s, %s %s/%s\n", version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}

// completionScripts are the shell functions that ask dhdfs itself for
// completions (urfave/cli's --generate-bash-completion), from urfave/cli's
// autocomplete directory; fish gets a static script the library writes.
var completionScripts = map[string]string{
	"bash": `# bash completion for dhdfs: source it, or put it in
# /etc/bash_completion.d/dhdfs (or ~/.local/share/bash-completion/completions/dhdfs)
_dhdfs_complete() {
  local cur words
  COMPREPLY=()
  cur="${COMP_WORDS[COMP_CWORD]}"
  words=("${COMP_WORDS[@]:0:$COMP_CWORD}")
  local opts
  if [[ "$cur" == "-"* ]]; then
    opts=$("${words[@]}" "$cur" --generate-bash-completion 2>/dev/null)
  else
    opts=$("${words[@]}" --generate-bash-completion 2>/dev/null)
  fi
  COMPREPLY=($(compgen -W "${opts}" -- "${cur}"))
}
complete -o bashdefault -o default -F _dhdfs_complete dhdfs
`,
	"zsh": `#compdef dhdfs
# zsh completion for dhdfs: put it in a directory of $fpath as _dhdfs
_dhdfs() {
  local -a opts
  local cur=${words[-1]}
  if [[ "$cur" == "-"* ]]; then
    opts=("${(@f)$(${words[@]:0:#words[@]-1} ${cur} --generate-bash-completion 2>/dev/null)}")
  else
    opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
  fi
  if [[ "${opts[1]}" != "" ]]; then
    _describe 'values' opts
  else
    _files
  fi
}
compdef _dhdfs dhdfs
`,
}

func cmdCompletion() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script (bash, zsh or fish)",
		ArgsUsage: "SHELL",
		Description: `Examples:
   source <(dhdfs completion bash)
   dhdfs completion bash > /etc/bash_completion.d/dhdfs
   dhdfs completion zsh > "${fpath[1]}/_dhdfs"
   dhdfs completion fish > ~/.config/fish/completions/dhdfs.fish`,
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, 1, "one SHELL: bash, zsh or fish"); err != nil {
				return err
			}
			shell := c.Args().First()
			if shell == "fish" {
				s, err := c.App.ToFishCompletion()
				if err != nil {
					return fmt.Errorf("fish completion: %w", err)
				}
				_, err = fmt.Fprint(c.App.Writer, s)
				return err
			}
			s, ok := completionScripts[shell]
			if !ok {
				return usageError(c, "no completion for %q: bash, zsh or fish", shell)
			}
			_, err := fmt.Fprint(c.App.Writer, s)
			return err
		},
	}
}

// onUsageError turns a flag parsing error into one line with a hint (and
// a suggestion for a mistyped flag), exit status 2, instead of the whole
// help.
func onUsageError(c *cli.Context, err error, _ bool) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
		group := name
		name = strings.TrimLeft(name, "-")
		if letter := unknownInGroup(c.Command.Flags, group); letter != "" {
			// -la: the short flags given together, one of them unknown.
			msg = "no flag -" + letter + " (in " + group + ")"
		} else {
			msg = "no flag " + dashed(name)
			if s := suggestFlag(c.Command.Flags, name); s != "" {
				msg += "; did you mean " + s + "?"
			}
		}
	} else if name, ok := strings.CutPrefix(msg, "flag needs an argument: "); ok {
		msg = dashed(strings.TrimLeft(name, "-")) + " needs a value"
	}
	return usageError(c, "%s", msg)
}

// unknownInGroup returns the first letter of arg, a group of short flags
// such as -la, that names no flag, when every other letter does: urfave/cli
// then reports the group as one unknown flag.
func unknownInGroup(flags []cli.Flag, arg string) string {
	letters, ok := strings.CutPrefix(arg, "-")
	if !ok || strings.HasPrefix(letters, "-") || len(letters) < 2 {
		return ""
	}
	known := map[string]bool{}
	for _, f := range flags {
		for _, n := range f.Names() {
			known[n] = true
		}
	}
	unknown := ""
	for _, r := range letters {
		switch l := string(r); {
		case known[l]:
		case unknown == "":
			unknown = l
		default:
			return "" // not a group of short flags
		}
	}
	return unknown
}

// dashed spells a flag's name as it is typed: -x, --name.
func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// suggestFlag returns the flag of flags nearest to name, spelled as it is
// given, or "".
func suggestFlag(flags []cli.Flag, name string) string {
	var names []string
	for _, f := range flags {
		names = append(names, f.Names()...)
	}
	if best := nearest(names, name); best != "" {
		return dashed(best)
	}
	return ""
}

// unknownCommand is the action of a command with subcommands, which runs
// only when none was named (print the help) or an unknown one was.
func unknownCommand(c *cli.Context) error {
	root := c.Command == nil || c.Lineage()[1] == nil
	name := c.Args().First()
	switch {
	case !c.Args().Present() && root:
		return cli.ShowAppHelp(c)
	case !c.Args().Present():
		return cli.ShowSubcommandHelp(c)
	case name == "help" && c.NArg() == 1 && root:
		return cli.ShowAppHelp(c)
	case name == "help" && c.NArg() == 1:
		return cli.ShowSubcommandHelp(c)
	case name == "help":
		// 'dhdfs help node add' is 'dhdfs node add --help'.
		cmds, path := c.Command.Subcommands, commandPath(c)
		for _, topic := range c.Args().Slice()[1:] {
			cmd := findCommand(cmds, topic)
			if cmd == nil {
				name = topic
				break
			}
			cmds, path = cmd.Subcommands, strings.TrimSpace(path+" "+topic)
		}
		if name != "help" {
			break
		}
		return c.App.Run(append(append([]string{c.App.Name}, strings.Fields(path)...), "--help"))
	}
	var names []string
	for _, sub := range c.Command.Subcommands {
		if !sub.Hidden {
			names = append(names, sub.Names()...)
		}
	}
	where := "dhdfs"
	if c.Command.Name != "" && c.Command.Name != c.App.Name {
		where = "dhdfs " + c.Command.Name
	}
	msg := fmt.Sprintf("%q is not a command of %s", name, where)
	if s := nearest(names, name); s != "" {
		msg += fmt.Sprintf("; did you mean '%s %s'?", where, s)
	}
	return cli.Exit(fmt.Sprintf("%s (see '%s --help')", msg, where), 2)
}

// nearest returns the candidate closest to name by edit distance, if it
// is close enough to be a typo (or name is a prefix of it), else "".
func nearest(candidates []string, name string) string {
	best, bestD := "", len(name)/2+1
	for _, c := range candidates {
		if len(name) >= 2 && strings.HasPrefix(c, name) {
			return c
		}
		if d := editDistance(c, name); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the Damerau–Levenshtein distance (with adjacent
// transpositions) between a and b.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}

// flagsFirst moves the flags that follow a command's arguments before
// them, as GNU tools accept them ('dhdfs mount DIR --daemon', 'dhdfs rm
// PATH -r'): Go's flag parsing, which urfave/cli uses, stops at the first
// argument. Everything after "--" stays an argument; an argument that
// starts with "-" is kept one by a "--" put before the arguments.
func flagsFirst(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	out := []string{args[0]}
	rest := args[1:]
	flags := app.Flags
	var cmds []*cli.Command = app.Commands
	var cur *cli.Command
	// The command path: global and command flags, then the names.
	for {
		pre, after := takeFlags(flags, rest)
		out = append(out, pre...)
		rest = after
		if len(rest) == 0 || rest[0] == "--" {
			return append(out, rest...)
		}
		cmd := findCommand(cmds, rest[0])
		if cmd == nil {
			break // arguments of the command found so far
		}
		out = append(out, rest[0])
		rest = rest[1:]
		cur, flags, cmds = cmd, cmd.Flags, cmd.Subcommands
		if len(cmds) == 0 {
			break
		}
	}
	var moved, positional []string
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if a == "--" {
			positional = append(positional, rest[i+1:]...)
			break
		}
		if len(a) > 1 && a[0] == '-' {
			if cur != nil && dashH[cur.Name] != "" {
				a = takeDashH(a, dashH[cur.Name], &moved)
				if a == "" {
					continue
				}
			}
			moved = append(moved, a)
			if f := flagNamed(flags, a); f != nil && takesValue(f) && !strings.Contains(a, "=") && i+1 < len(rest) {
				i++
				moved = append(moved, rest[i])
			}
			continue
		}
		positional = append(positional, a)
	}
	out = append(out, moved...)
	if slices.ContainsFunc(positional, func(p string) bool { return strings.HasPrefix(p, "-") }) {
		out = append(out, "--")
	}
	return append(out, positional...)
}

// dashH names the commands where -h means what it means to the tool they
// mirror ('ls -lh'), not --help (which still works), and the flag it is.
var dashH = map[string]string{"ls": "--human-readable"}

// takeDashH rewrites arg for a command where -h is the flag long: "-h"
// and an 'h' in a group of short flags ("-lh") become long, appended to
// out. It returns what is left of arg, "" if nothing.
func takeDashH(arg, long string, out *[]string) string {
	if strings.HasPrefix(arg, "--") || !strings.Contains(arg, "h") || strings.Contains(arg, "=") {
		return arg
	}
	*out = append(*out, long)
	if rest := strings.ReplaceAll(arg, "h", ""); rest != "-" {
		return rest
	}
	return ""
}

// takeFlags splits args into the flags (with their values) at its start
// and the rest.
func takeFlags(flags []cli.Flag, args []string) (pre, rest []string) {
	i := 0
	for i < len(args) {
		a := args[i]
		if a == "--" || len(a) < 2 || a[0] != '-' {
			break
		}
		i++
		if f := flagNamed(flags, a); f != nil && takesValue(f) && !strings.Contains(a, "=") && i < len(args) {
			i++
		}
	}
	return args[:i], args[i:]
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// flagNamed returns the flag that arg ("-x", "--name", "--name=v") names.
func flagNamed(flags []cli.Flag, arg string) cli.Flag {
	name := strings.TrimLeft(arg, "-")
	if i := strings.IndexByte(name, '='); i >= 0 {
		name = name[:i]
	}
	for _, f := range flags {
		if slices.Contains(f.Names(), name) {
			return f
		}
	}
	return nil
}

func takesValue(f cli.Flag) bool {
	if v, ok := f.(cli.DocGenerationFlag); ok {
		return v.TakesValue()
	}
	return false
}

// commandPath names c's command as typed after "dhdfs" ("node add"):
// urfave/cli fills in Command.FullName only once a command runs, and a
// usage error comes before.
func commandPath(c *cli.Context) string {
	var names []string
	for _, lc := range c.Lineage() {
		if lc.Command != nil && lc.Command.Name != "" && lc.Command.Name != lc.App.Name {
			names = append(names, lc.Command.Name)
		}
	}
	slices.Reverse(names)
	return strings.Join(names, " ")
}

// conventions gives every command of the tree the shared behaviour: usage
// errors as one line with exit status 2, and unknown subcommands named.
func conventions(cmds []*cli.Command) {
	for _, cmd := range cmds {
		cmd.OnUsageError = onUsageError
		if len(cmd.Subcommands) > 0 && cmd.Action == nil {
			cmd.Action = unknownCommand
		}
		conventions(cmd.Subcommands)
	}
}
