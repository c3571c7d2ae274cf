package cluster

import (
	"context"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/dhdfs/dhdfs/nodes"
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
	err := m.meta.update(func(txn *badger.Txn) error {
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

// Capacity returns the total and free bytes of the filesystems under the
// online drives, each filesystem counted once, for statfs.
func (m *Manager) Capacity() (total, free int64) {
	seen := map[uint64]bool{}
	for _, d := range m.driveList() {
		if d.usable() == nil {
			continue
		}
		rec := d.record()
		if seen[rec.Device] {
			continue
		}
		seen[rec.Device] = true
		f := d.freeBytes()
		_, t, err := nodes.FilesystemSpace(rec.Path)
		if err != nil {
			continue
		}
		total += t
		free += f
	}
	return total, free
}
