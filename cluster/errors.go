package cluster

import "errors"

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
