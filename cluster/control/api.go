// Package control lets dhdfs commands administer a pool whether or not it
// is mounted: one API, two transports. With no mount running, the CLI
// opens the pool itself (a *cluster.Manager is an API); while `dhdfs mount`
// runs, it owns the stores, and serves the same API on a unix socket in the
// pool's home that Client speaks to.
package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/dhdfs/dhdfs/cluster"
)

// API is what the dhdfs commands need of a pool.
type API interface {
	AddDrive(path string, o cluster.AddDriveOptions) (cluster.DriveInfo, []string, error)
	Drives() ([]cluster.DriveInfo, error)
	SetDriveOffline(name string, offline bool) (cluster.DriveInfo, error)
	SetDriveReserve(name string, reserve int64) (cluster.DriveInfo, error)
	Status() (cluster.Status, error)
	Resolve(p string) (cluster.Inode, error)
	List(p string) ([]cluster.Entry, error)
	StatPath(p string, chunks bool) (cluster.FileStat, error)
	MkdirPath(p string, parents bool, mode uint32, c cluster.Caller) (cluster.Inode, error)
	RemovePath(p string, recursive bool) error
	PutFile(ctx context.Context, p string, r io.Reader, mode uint32, c cluster.Caller) (cluster.Inode, error)
	GetFile(ctx context.Context, p string, w io.Writer) (int64, error)
	Heal(ctx context.Context, progress cluster.ProgressFunc) (cluster.HealReport, error)
	Scrub(ctx context.Context, progress cluster.ProgressFunc) (cluster.ScrubReport, error)
	GC(ctx context.Context, progress cluster.ProgressFunc) (cluster.GCReport, error)
	Rebalance(ctx context.Context, threshold float64, progress cluster.ProgressFunc) (cluster.MoveReport, error)
	Drain(ctx context.Context, name string, progress cluster.ProgressFunc) (cluster.MoveReport, error)
	Replace(ctx context.Context, old, newPath string, o cluster.AddDriveOptions, progress cluster.ProgressFunc) (cluster.MoveReport, error)
	RemoveDrive(name string, force bool) (cluster.RemoveReport, error)
	Close() error
}

var _ API = (*cluster.Manager)(nil)

// SocketName is the control socket's name inside the pool's home.
const SocketName = "control.sock"

// SocketPath returns the control socket of the pool in home.
func SocketPath(home string) string { return filepath.Join(home, SocketName) }

// Open returns the API of the pool in home: the running mount's, through
// its socket, if there is one; otherwise the pool opened directly (which
// fails with cluster.ErrPoolInUse if another process holds it).
func Open(home string, opts cluster.Options) (API, error) {
	// A home this user may not read, or with no pool, says so: not
	// "connect to the mount: permission denied".
	if err := cluster.CheckPool(home); err != nil {
		return nil, err
	}
	c, err := Dial(home)
	if err == nil {
		return c, nil
	}
	if !errors.Is(err, errNoServer) {
		return nil, err
	}
	m, err := cluster.Open(home, opts)
	if errors.Is(err, cluster.ErrPoolInUse) {
		// The holder may be a mount that is starting or stopping.
		if c, derr := Dial(home); derr == nil {
			return c, nil
		}
	}
	return m, err
}

// errNoServer means no mount is serving the socket.
var errNoServer = errors.New("no dhdfs mount is serving this pool")

// checkOwner refuses a socket or home another user could have planted or
// can reach: only the pool's owner may administer it.
func checkOwner(path string) error {
	st, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s is accessible to other users (mode %v); it must be private to its owner: chmod 700 %s", path, st.Mode().Perm(), path)
	}
	return nil
}
