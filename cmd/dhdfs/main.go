// Command dhdfs pools a machine's drives into one replicated filesystem.
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"
)

func main() {
	app := newApp()
	args := os.Args
	if filepath.Base(args[0]) == helperName {
		var err error
		if args, err = helperArgs(args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	if err := app.Run(flagsFirst(app, args)); err != nil {
		// One line, whatever a library put in its message.
		fmt.Fprintf(os.Stderr, "dhdfs: %s\n", strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", " "))
		var ec cli.ExitCoder
		if errors.As(err, &ec) && ec.ExitCode() != 0 {
			os.Exit(ec.ExitCode())
		}
		os.Exit(1)
	}
}

func newApp() *cli.App {
	app := &cli.App{
		Name:  "dhdfs",
		Usage: "pool a machine's drives into one filesystem that survives a dead drive",
		Description: `dhdfs splits files into chunks and stores each chunk on several drives
(the replication factor). A drive is a directory you name, ideally one per
physical disk. The pool's metadata lives in its home directory (--home,
$DHDFS_HOME, or ~/.local/share/dhdfs).

--home and -v/--verbose go before or after the command name. Given on the
command line they beat $DHDFS_HOME; given at both places, the one nearest
the command wins: 'dhdfs --home /a ls --home /b' lists /b.

Start with:
   dhdfs init
   dhdfs node add /mnt/disk1/dhdfs
   dhdfs node add /mnt/disk2/dhdfs
   dhdfs put ./photo.jpg /photo.jpg`,
		Version:                version(),
		Flags:                  []cli.Flag{homeFlag(), verboseFlag()},
		HideHelpCommand:        true,
		UseShortOptionHandling: true,
		EnableBashCompletion:   true,
		OnUsageError:           onUsageError,
		Action:                 unknownCommand,
		ExitErrHandler:         func(*cli.Context, error) {}, // main prints errors once
		Commands: []*cli.Command{
			cmdInit(),
			cmdNode(),
			cmdPut(),
			cmdGet(),
			cmdLs(),
			cmdStat(),
			cmdMkdir(),
			cmdRm(),
			cmdStatus(),
			cmdHeal(),
			cmdScrub(),
			cmdRebalance(),
			cmdGC(),
			cmdFsck(),
			cmdRecover(),
			cmdMount(),
			cmdUmount(),
			cmdInstallHelper(),
			cmdCompletion(),
			cmdVersion(),
		},
	}
	// -v is --verbose; the version has no short flag.
	cli.VersionFlag = &cli.BoolFlag{Name: "version", Usage: "print the version"}
	settleCommonFlags(app.Commands)
	conventions(app.Commands)
	return app
}
