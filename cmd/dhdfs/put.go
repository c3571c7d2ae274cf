package main

import (
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/dhdfs/dhdfs/cluster/control"
)

func cmdPut() *cli.Command {
	return &cli.Command{
		Name:      "put",
		Usage:     "copy a local file (or stdin) into the pool",
		ArgsUsage: "SRC DST",
		Description: `SRC is a local file, or - for standard input. DST is a path in the pool;
if it is an existing directory or ends in /, the file keeps SRC's name. The
parent directory must exist. An existing file at DST is replaced only once
the new content is fully stored on the drives.

Examples:
   dhdfs put ./local.bin /docs/local.bin
   dhdfs put ./local.bin /docs/
   tar c photos | dhdfs put - /backup/photos.tar`,
		Flags: withCommon(),
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 2, 2, "SRC and DST"); err != nil {
				return err
			}
			src, dst := c.Args().Get(0), c.Args().Get(1)
			if err := poolPaths(c, dst); err != nil {
				return err
			}
			var r io.Reader = os.Stdin
			mode := uint32(0o644)
			if src != "-" {
				f, err := os.Open(src)
				if err != nil {
					return err
				}
				defer f.Close()
				st, err := f.Stat()
				if err != nil {
					return err
				}
				if st.IsDir() {
					return fmt.Errorf("%s is a directory; put copies one file", src)
				}
				r, mode = f, uint32(st.Mode().Perm())
			}
			return withPool(c, func(m control.API) error {
				target := dst
				if strings.HasSuffix(dst, "/") || isPoolDir(m, dst) {
					if src == "-" {
						return usageError(c, "DST %s is a directory; name the file when reading stdin", dst)
					}
					target = path.Join(dst, filepath.Base(src))
				}
				size := int64(-1)
				if f, ok := r.(*os.File); ok && f != os.Stdin {
					if st, err := f.Stat(); err == nil {
						size = st.Size()
					}
				}
				wrap, _, done := copyProgress("put "+target, size)
				n, err := m.PutFile(c.Context, target, wrap(r), mode, callerOf())
				done()
				if err != nil {
					return err
				}
				if c.Bool("verbose") {
					fmt.Fprintf(os.Stderr, "%s: %s\n", target, humanBytes(n.Size))
				}
				return nil
			})
		},
	}
}

func isPoolDir(m control.API, p string) bool {
	n, err := m.Resolve(p)
	return err == nil && n.IsDir()
}
