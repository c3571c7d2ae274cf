package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/dhdfs/dhdfs/nodes"
)

// Limits on the pool settings chosen at init.
const (
	MinChunkSize = 64 << 10
	MaxChunkSize = 64 << 20
	MaxReplicas  = 16
	// DefaultChunkSize matches FUSE's largest write (1 MiB): one kernel write
	// fills at most one chunk, and a chunk is big enough that per-chunk
	// metadata stays small next to the data.
	DefaultChunkSize = 1 << 20
	DefaultReplicas  = 2
)

// PoolConfig is what `dhdfs init` fixes for the life of a pool. It is kept
// in HOME/pool.json.
type PoolConfig struct {
	Format    int    `json:"format"`
	PoolID    string `json:"pool_id"`
	Replicas  int    `json:"replicas"`
	ChunkSize int    `json:"chunk_size"`
	// Hash names chunks; empty in pools from before BLAKE3 (SHA-256).
	Hash    nodes.Hash `json:"hash,omitempty"`
	Created time.Time  `json:"created"`
	// HomeID names this home of the pool; each drive's identity says which
	// home uses it. FormerHomes are the homes recover replaced: a drive
	// still naming one is taken over when it is next opened (it was
	// offline or away during the recover).
	HomeID      string   `json:"home_id,omitempty"`
	FormerHomes []string `json:"former_homes,omitempty"`
	// Meta is the URL of the metadata engine (kv.Open); empty for the
	// embedded Badger store in HOME/meta.
	Meta string `json:"meta,omitempty"`
}

// configFormat 2 added Hash: a dhdfs that reads only format 1 refuses a
// pool whose chunks it would name differently. Format 1 is still read.
const configFormat = 2

const (
	configFile = "pool.json"
	metaDir    = "meta"
	lockFile   = "lock"
)

// DefaultPoolConfig returns the settings `dhdfs init` uses without flags.
func DefaultPoolConfig() PoolConfig {
	return PoolConfig{Format: configFormat, Replicas: DefaultReplicas, ChunkSize: DefaultChunkSize, Hash: nodes.BLAKE3}
}

// Validate reports the first setting out of range.
func (c PoolConfig) Validate() error {
	if c.Replicas < 1 || c.Replicas > MaxReplicas {
		return fmt.Errorf("replicas %d out of range 1..%d: %w", c.Replicas, MaxReplicas, ErrInvalid)
	}
	if c.ChunkSize < MinChunkSize || c.ChunkSize > MaxChunkSize {
		return fmt.Errorf("chunk size %d out of range %d..%d bytes: %w", c.ChunkSize, MinChunkSize, MaxChunkSize, ErrInvalid)
	}
	if c.ChunkSize&(c.ChunkSize-1) != 0 {
		return fmt.Errorf("chunk size %d is not a power of two: %w", c.ChunkSize, ErrInvalid)
	}
	if !c.Hash.Valid() {
		return fmt.Errorf("chunk hash %q: want %s or %s: %w", c.Hash, nodes.BLAKE3, nodes.SHA256, ErrInvalid)
	}
	return nil
}

// DefaultHome returns $DHDFS_HOME, else $XDG_DATA_HOME/dhdfs, else
// ~/.local/share/dhdfs.
func DefaultHome() string {
	if h := os.Getenv("DHDFS_HOME"); h != "" {
		return h
	}
	if x := os.Getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "dhdfs")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "share", "dhdfs")
	}
	return ".dhdfs"
}

// CheckPool reports whether home holds a pool this dhdfs can open, with
// the cause when not: no pool there, or a home the caller may not read.
func CheckPool(home string) error {
	_, err := readConfig(home)
	return err
}

func readConfig(home string) (PoolConfig, error) {
	var c PoolConfig
	err := nodes.ReadJSONFile(filepath.Join(home, configFile), &c)
	if errors.Is(err, os.ErrNotExist) {
		return c, fmt.Errorf("%s: %w", home, ErrNoPool)
	}
	if errors.Is(err, os.ErrPermission) {
		return c, fmt.Errorf("pool home %s: permission denied (it belongs to its owner; run dhdfs as that user)", home)
	}
	if err != nil {
		return c, fmt.Errorf("read pool config: %w", err)
	}
	if c.Format == 1 && c.Hash != "" {
		return c, fmt.Errorf("pool config %s: format 1 with a hash", filepath.Join(home, configFile))
	}
	if c.Format < 1 || c.Format > configFormat {
		return c, fmt.Errorf("pool config %s has format %d, this dhdfs reads %d", filepath.Join(home, configFile), c.Format, configFormat)
	}
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("pool config %s: %w", filepath.Join(home, configFile), err)
	}
	return c, nil
}

func writeConfig(home string, c PoolConfig) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("encode pool config: %w", err)
	}
	return nodes.WriteFileAtomic(filepath.Join(home, configFile), append(b, '\n'), 0o600)
}
