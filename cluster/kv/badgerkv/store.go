package badgerkv

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/dhdfs/dhdfs/nodes/badgerlog"
)

// StoreOptions size a pool's metadata store (OpenStore).
type StoreOptions struct {
	MemTableSize   int64
	NumMemtables   int
	BlockCacheSize int64
	// Log receives Badger's messages; nil discards them.
	Log *slog.Logger
}

// OpenStore opens (or creates) the pool metadata store in dir. A store
// Badger could not read safely is refused with a *kv.DamagedError (see
// Check), and so is damage Badger itself finds later, in a View, an
// Attempt or a Sync, where it would otherwise panic.
func OpenStore(dir string, o StoreOptions) (*Engine, error) {
	if err := Check(dir); err != nil {
		return nil, err
	}
	// Badger's checksum verification stays off (NoVerification): Check did
	// what OnTableRead would, and on block reads Badger turns a bad block
	// into a key that silently reads as absent (levelHandler.get drops the
	// iterator's error), which fsck --repair would then "repair".
	logger := &openingLogger{Logger: badgerlog.New(o.Log)}
	logger.opening.Store(true)
	defer logger.opening.Store(false)
	opts := DefaultOptions(dir).
		WithLogger(logger).
		WithMemTableSize(o.MemTableSize).
		WithNumMemtables(o.NumMemtables).
		WithNumCompactors(2).
		WithBlockCacheSize(o.BlockCacheSize).
		WithCompression(options.None).
		WithValueLogFileSize(128 << 20).
		WithVerifyValueChecksum(true).
		WithMetricsEnabled(false)
	return Open(opts)
}

// Exists reports whether dir holds a store. Badger would start an empty
// one in place of a missing one.
func Exists(dir string) (bool, error) {
	_, err := os.Stat(filepath.Join(dir, badger.ManifestFilename))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("metadata store %s: %w", dir, err)
	}
	return true, nil
}

// openingLogger is Badger's logger for the store. While the store opens,
// Badger's errors are logged at debug level only: Badger logs a failure
// to open and also returns it, and the returned error is what the
// command reports, on one line.
type openingLogger struct {
	badger.Logger
	opening atomic.Bool
}

func (l *openingLogger) Errorf(f string, a ...any) {
	if l.opening.Load() {
		l.Logger.Debugf(f, a...)
		return
	}
	l.Logger.Errorf(f, a...)
}
