package main

import (
	"fmt"
	"os"
	"path"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/dhdfs/dhdfs/cluster/control"
)

func cmdGet() *cli.Command {
	return &cli.Command{
		Name:      "get",
		Usage:     "copy a file out of the pool to a local file (or stdout)",
		ArgsUsage: "SRC DST",
		Description: `SRC is a path in the pool. DST is a local path, an existing local
directory (the file keeps its name), or - for standard output. Every chunk
is checked against its checksum; a bad or unreachable copy is skipped for
another. A local file is written under a temporary name and renamed when
complete, so a failed get never leaves a partial DST.

Examples:
   dhdfs get /docs/local.bin ./copy.bin
   dhdfs get /backup/photos.tar - | tar x`,
		Flags: withCommon(),
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 2, 2, "SRC and DST"); err != nil {
				return err
			}
			src, dst := c.Args().Get(0), c.Args().Get(1)
			if err := poolPaths(c, src); err != nil {
				return err
			}
			return withPool(c, func(m control.API) error {
				if dst == "-" {
					_, err := m.GetFile(c.Context, src, os.Stdout)
					return err
				}
				if st, err := os.Stat(dst); err == nil && st.IsDir() {
					dst = filepath.Join(dst, path.Base(src))
				}
				n, err := m.Resolve(src)
				if err != nil {
					return err
				}
				if !n.IsRegular() {
					return fmt.Errorf("%s is not a regular file", src)
				}
				// The directory named, not the temporary file, in an error.
				if st, err := os.Stat(filepath.Dir(dst)); err != nil {
					return err
				} else if !st.IsDir() {
					return fmt.Errorf("%s: not a directory", filepath.Dir(dst))
				}
				tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".dhdfs-*")
				if err != nil {
					return err
				}
				defer os.Remove(tmp.Name()) // no-op after the rename
				_, wrap, done := copyProgress("get "+src, n.Size)
				_, err = m.GetFile(c.Context, src, wrap(tmp))
				done()
				if err != nil {
					tmp.Close()
					return fmt.Errorf("get %s: %w", src, err)
				}
				if err := tmp.Chmod(os.FileMode(n.Mode & 0o777)); err != nil {
					tmp.Close()
					return err
				}
				if err := tmp.Close(); err != nil {
					return err
				}
				return os.Rename(tmp.Name(), dst)
			})
		},
	}
}
