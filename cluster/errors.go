package cluster

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// Sentinel errors. Callers test them with errors.Is; package fs maps them to
// errnos at the FUSE boundary and the CLI prints the wrapped message.
var (
	ErrNoPool       = errors.New("no pool here (run 'dhdfs init' first)")
	ErrPoolExists   = errors.New("a pool already exists here")
	ErrPoolInUse    = errors.New("pool is in use")
	ErrNotFound     = errors.New("no such file or directory")
	ErrExist        = errors.New("file exists")
	ErrNotDir       = errors.New("not a directory")
	ErrIsDir        = errors.New("is a directory")
	ErrNotEmpty     = errors.New("directory not empty")
	ErrInvalid      = errors.New("invalid argument")
	ErrNameTooLong  = errors.New("file name too long")
	ErrFileTooBig   = errors.New("file too large")
	ErrNoDrives     = errors.New("no drive is online to hold the data")
	ErrNoSpace      = errors.New("no space left on any drive")
	ErrUnknownDrive = errors.New("no such drive in the pool")
	ErrBadDrive     = errors.New("cannot use this path as a drive")
	ErrUnavailable  = errors.New("no readable replica of a chunk")
	ErrClosed       = errors.New("pool is closed")
	ErrReadOnly     = errors.New("the pool is mounted read-only")
	// ErrMetaDamaged is wrapped by *MetaDamagedError: home's metadata store
	// is damaged; dhdfs recover rebuilds it from a drive's mirror.
	ErrMetaDamaged = errors.New("metadata store is damaged")
)

// MetaDamagedError reports a metadata store that cannot be used as it is.
// It wraps ErrMetaDamaged.
type MetaDamagedError struct {
	Home   string // the pool's home
	Detail string // what was found damaged
}

func (e *MetaDamagedError) Error() string {
	return fmt.Sprintf("metadata store in %s is damaged (%s): restore it with 'dhdfs recover --from DRIVE --home %s --force'",
		e.Home, e.Detail, e.Home)
}

func (e *MetaDamagedError) Unwrap() error { return ErrMetaDamaged }

// metaDamaged returns the error for damage found in the meta store dir.
func metaDamaged(dir string, format string, a ...any) error {
	detail := strings.TrimSpace(fmt.Sprintf(format, a...))
	if i := strings.IndexByte(detail, '\n'); i >= 0 {
		detail = detail[:i] // one line: some of Badger's messages go on with advice
	}
	return &MetaDamagedError{Home: filepath.Dir(dir), Detail: detail}
}
