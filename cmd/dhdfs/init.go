package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/dhdfs/dhdfs/cluster"
	"github.com/dhdfs/dhdfs/nodes"
)

func cmdInit() *cli.Command {
	return &cli.Command{
		Name:  "init",
		Usage: "create a new, empty pool in the home directory",
		Description: `The replication factor, chunk size and chunk hash are fixed for the life of the pool
(the replication factor can later be raised per directory or file).

Examples:
   dhdfs init
   dhdfs init --home /var/lib/dhdfs --replicas 3 --chunk-size 4MiB`,
		Flags: withCommon(
			&cli.IntFlag{Name: "replicas", Value: cluster.DefaultReplicas, Usage: "copies of each chunk, on distinct drives"},
			&cli.StringFlag{Name: "chunk-size", Value: "1MiB", Usage: "largest chunk, a power of two from 64KiB to 64MiB"},
			&cli.StringFlag{Name: "hash", Value: string(nodes.BLAKE3), Usage: "the hash that names chunks: blake3 (fast) or sha256"},
			&cli.StringFlag{Name: "meta", Usage: "keep the metadata in this engine instead of HOME/meta: etcd://HOST:PORT[,HOST:PORT...]/PREFIX"},
		),
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 0, "no arguments"); err != nil {
				return err
			}
			size, err := parseSize(c.String("chunk-size"))
			if err != nil {
				return usageError(c, "--chunk-size %s: %v", c.String("chunk-size"), err)
			}
			cfg := cluster.DefaultPoolConfig()
			cfg.Replicas, cfg.ChunkSize, cfg.Hash = c.Int("replicas"), int(size), nodes.Hash(c.String("hash"))
			cfg.Meta = c.String("meta")
			if err := lasting(c, "--meta", cfg.Meta); err != nil {
				return err
			}
			if cfg.Hash == "" || !cfg.Hash.Valid() {
				return usageError(c, "--hash %q: want blake3 or sha256", c.String("hash"))
			}
			if err := cfg.Validate(); err != nil {
				return usageError(c, "%s", strings.TrimSuffix(err.Error(), ": "+cluster.ErrInvalid.Error()))
			}
			cfg, err = cluster.Init(c.String("home"), cfg)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "Created pool %s in %s (replicas %d, chunk size %s).\nNext: dhdfs node add PATH, once per drive.\n",
				cfg.PoolID[:8], c.String("home"), cfg.Replicas, humanBytes(int64(cfg.ChunkSize)))
			return nil
		},
	}
}
