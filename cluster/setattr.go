package cluster

import (
	"context"
	"time"

	"github.com/dhdfs/dhdfs/cluster/kv"
)

// SetAttrIn holds the attributes to change; nil fields stay as they are.
type SetAttrIn struct {
	Mode  *uint32 // permission bits only
	Uid   *uint32
	Gid   *uint32
	Size  *int64
	Atime *int64 // Unix nanoseconds
	Mtime *int64
}

// SetAttr changes an inode's attributes. A size change truncates or extends
// the file (an open File's buffered writes are committed first).
func (m *Manager) SetAttr(ctx context.Context, ino Ino, in SetAttrIn) (Inode, error) {
	f := m.openFile(ino)
	if in.Size != nil {
		var err error
		if f != nil {
			err = f.Truncate(ctx, *in.Size)
		} else {
			err = m.truncate(ctx, ino, *in.Size)
		}
		if err != nil {
			return Inode{}, err
		}
	}
	if in.Mode == nil && in.Uid == nil && in.Gid == nil && in.Atime == nil && in.Mtime == nil {
		return m.GetAttr(ino)
	}
	if f != nil && in.Mtime != nil {
		// Buffered writes would stamp their own time when flushed, after and
		// over the one asked for now (cp -p sets times before closing).
		if err := f.Flush(ctx); err != nil {
			return Inode{}, err
		}
	}
	err := m.meta.update(func(txn kv.Txn) error {
		n, err := getInode(txn, ino)
		if err != nil {
			return err
		}
		if in.Mode != nil {
			n.Mode = n.Mode&^0o7777 | *in.Mode&0o7777
		}
		if in.Uid != nil {
			n.Uid = *in.Uid
		}
		if in.Gid != nil {
			n.Gid = *in.Gid
		}
		if in.Atime != nil {
			n.Atime = *in.Atime
		}
		if in.Mtime != nil {
			n.Mtime = *in.Mtime
		}
		n.Ctime = now()
		return putInode(txn, &n)
	})
	if err != nil {
		return Inode{}, err
	}
	return m.GetAttr(ino)
}

// Capacity returns the total bytes of the filesystems under the online
// drives and the bytes new chunks can use on them (PoolSpace.Avail), each
// filesystem counted once: statfs and fallocate divide them by the
// replication factor.
func (m *Manager) Capacity() (total, avail int64) {
	sp := m.Space()
	return sp.Total, sp.Avail
}

// AtimeMode says when reads update access times.
type AtimeMode int

const (
	// AtimeRelative updates the access time when it is not newer than
	// the modification or change time, or is a day old (relatime, Linux's
	// default): programs that compare atime with mtime (mail readers,
	// tmpwatch) work, and a file read all day costs one metadata write.
	AtimeRelative AtimeMode = iota
	// AtimeStrict updates it on every access (strictatime).
	AtimeStrict
	// AtimeNever never updates it (noatime).
	AtimeNever
)

// relatimeAge is how old an access time relatime renews anyway.
const relatimeAge = 24 * time.Hour

// needsAtime reports whether an access now should renew n's access time.
func needsAtime(n *Inode, mode AtimeMode, t int64) bool {
	switch mode {
	case AtimeNever:
		return false
	case AtimeStrict:
		return true
	}
	return n.Atime <= n.Mtime || n.Atime <= n.Ctime || t-n.Atime >= int64(relatimeAge)
}

// TouchAtime records an access to ino (a read or a directory listing) as
// mode says, and reports whether the access time changed. It costs a
// metadata read, and a write only when the access time changes.
func (m *Manager) TouchAtime(ino Ino, mode AtimeMode) (bool, error) {
	if mode == AtimeNever {
		return false, nil
	}
	n, err := m.inode(ino)
	if err != nil || !needsAtime(&n, mode, now()) {
		return false, err
	}
	changed := false
	err = m.meta.update(func(txn kv.Txn) error {
		n, err := getInode(txn, ino)
		if err != nil {
			return err
		}
		t := now()
		if changed = needsAtime(&n, mode, t); !changed {
			return nil // another access renewed it meanwhile
		}
		n.Atime = t
		return putInode(txn, &n)
	})
	return changed, err
}
