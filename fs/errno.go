package fs

import (
	"context"
	"errors"
	"log/slog"
	"syscall"

	"github.com/dhdfs/dhdfs/cluster"
)

// errnoOf maps errors from the cluster package to errnos; it is the only
// place errors become errnos. Errors it does not know are logged and
// become EIO (go-fuse's own fallback would be ENOTSUP, which misleads).
func errnoOf(log *slog.Logger, op string, err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var errno syscall.Errno
	switch {
	case errors.Is(err, cluster.ErrNotFound):
		return syscall.ENOENT
	case errors.Is(err, cluster.ErrExist):
		return syscall.EEXIST
	case errors.Is(err, cluster.ErrNotDir):
		return syscall.ENOTDIR
	case errors.Is(err, cluster.ErrIsDir):
		return syscall.EISDIR
	case errors.Is(err, cluster.ErrNotEmpty):
		return syscall.ENOTEMPTY
	case errors.Is(err, cluster.ErrReadOnly):
		return syscall.EROFS
	case errors.Is(err, cluster.ErrNameTooLong):
		return syscall.ENAMETOOLONG
	case errors.Is(err, cluster.ErrFileTooBig):
		return syscall.EFBIG
	case errors.Is(err, cluster.ErrInvalid):
		return syscall.EINVAL
	case errors.Is(err, cluster.ErrNoSpace):
		return syscall.ENOSPC
	case errors.Is(err, cluster.ErrNoAttr):
		return syscall.ENODATA
	case errors.Is(err, cluster.ErrNotSupported):
		return syscall.ENOTSUP
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	case errors.As(err, &errno):
		return errno
	}
	// No drive online, no readable copy, a metadata failure: the caller
	// sees EIO, the log says why.
	log.Error("I/O error", "op", op, "err", err)
	return syscall.EIO
}
