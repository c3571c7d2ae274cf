package cluster

import (
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/dhdfs/dhdfs/cluster/kv"
)

// MaxNameLen is the longest file name, as on ext4.
const MaxNameLen = 255

// DirEntry is one name in a directory.
type DirEntry struct {
	Name string
	Ino  Ino
	// Type holds the syscall.S_IF* file type bits.
	Type uint32
}

// Caller identifies who creates a file: its owner.
type Caller struct{ Uid, Gid uint32 }

func checkName(name string) error {
	switch {
	case name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') || strings.ContainsRune(name, 0):
		return fmt.Errorf("name %q: %w", name, ErrInvalid)
	case len(name) > MaxNameLen:
		return fmt.Errorf("name of %d bytes: %w", len(name), ErrNameTooLong)
	}
	return nil
}

func now() int64 { return time.Now().UnixNano() }

// GetAttr returns an inode's attributes, with the size and times of writes
// still buffered in an open File.
func (m *Manager) GetAttr(ino Ino) (Inode, error) {
	i, err := m.inode(ino)
	m.live(&i)
	return i, err
}

// inode returns the attributes stored in the metadata only.
func (m *Manager) inode(ino Ino) (Inode, error) {
	var i Inode
	err := m.meta.view(func(txn kv.Reader) error {
		var err error
		i, err = getInode(txn, ino)
		return err
	})
	return i, err
}

// DirSize is the size a directory reports, as ext4 reports one block for
// a small directory: tools that take a size of 0 for an empty or broken
// directory then see an ordinary one. dhdfs keeps no byte size for
// directories (their entries are keys in the metadata store).
const DirSize = 4096

// live applies what the stored record does not hold to n: the unflushed
// state of an open file, a directory's reported size.
func (m *Manager) live(n *Inode) {
	if n.IsDir() && n.Size == 0 {
		n.Size = DirSize
	}
	if !n.IsRegular() {
		return
	}
	if f := m.openFile(n.Ino); f != nil {
		f.overlay(n)
	}
}

// Lookup returns the inode named name in directory parent. A name longer
// than any dhdfs stores fails with ErrNameTooLong rather than ErrNotFound,
// as on a local filesystem: chmod, unlink or rename of such a path are
// refused for its length.
func (m *Manager) Lookup(parent Ino, name string) (Inode, error) {
	if len(name) > MaxNameLen {
		return Inode{}, fmt.Errorf("name of %d bytes: %w", len(name), ErrNameTooLong)
	}
	var i Inode
	err := m.meta.view(func(txn kv.Reader) error {
		e, ok, err := getDentry(txn, parent, name)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%s: %w", name, ErrNotFound)
		}
		i, err = getInode(txn, e.Ino)
		return err
	})
	m.live(&i)
	return i, err
}

// ReadDir lists a directory in name order.
func (m *Manager) ReadDir(ino Ino) ([]DirEntry, error) {
	return m.ReadDirAfter(ino, "", -1)
}

// ReadDirAfter lists at most limit entries (all if limit < 0) of directory
// ino whose names sort after after ("" lists from the first), in name
// order. Reading a directory in pieces this way costs each piece its own
// entries only, and an entry that exists throughout is listed exactly
// once, whatever is created or removed around it meanwhile.
func (m *Manager) ReadDirAfter(ino Ino, after string, limit int) ([]DirEntry, error) {
	var out []DirEntry
	err := m.meta.view(func(txn kv.Reader) error {
		out = out[:0]
		if _, err := parentDir(txn, ino); err != nil {
			return err
		}
		prefix := inoKey(kDentry, ino)
		opts := kv.ScanOptions{}
		if limit > 0 {
			opts.Limit = limit + 1 // the first may be the entry read last
		}
		return scanFrom(txn, prefix, append(prefix, after...), opts, func(k, v []byte) error {
			if limit == 0 {
				return errStop
			}
			name := string(k[len(prefix):])
			if name <= after && after != "" {
				return nil // the entry read last, or one before it
			}
			e, err := decodeDentry(v)
			if err != nil {
				return fmt.Errorf("read directory %d: %w", ino, err)
			}
			out = append(out, DirEntry{Name: name, Ino: e.Ino, Type: e.Type})
			limit--
			return nil
		})
	})
	return out, err
}

// parentDir loads parent and checks that it is a directory.
func parentDir(txn kv.Reader, parent Ino) (Inode, error) {
	dir, err := getInode(txn, parent)
	if err != nil {
		return dir, err
	}
	if !dir.IsDir() {
		return dir, fmt.Errorf("inode %d: %w", parent, ErrNotDir)
	}
	return dir, nil
}

// Mknod creates a file of the type in mode's S_IF bits (a regular file, a
// directory, or a symlink with target) named name in parent. It fails with
// ErrExist if the name is taken.
func (m *Manager) Mknod(parent Ino, name string, mode uint32, c Caller, target string) (Inode, error) {
	return m.Make(parent, name, NodeSpec{Mode: mode, Target: target}, c)
}

// NodeSpec describes an inode to create.
type NodeSpec struct {
	// Mode holds the file type (syscall.S_IF*; 0 is a regular file) and
	// the permission bits.
	Mode uint32
	// Rdev is a device node's device number (st_rdev).
	Rdev uint32
	// Target is a symlink's target.
	Target string
}

// checkType returns the file type of a new inode's mode.
func checkType(mode uint32) (uint32, error) {
	switch typ := mode & syscall.S_IFMT; typ {
	case syscall.S_IFREG, syscall.S_IFDIR, syscall.S_IFLNK, syscall.S_IFIFO, syscall.S_IFSOCK,
		syscall.S_IFCHR, syscall.S_IFBLK:
		return typ, nil
	case 0:
		return syscall.S_IFREG, nil
	default:
		return 0, fmt.Errorf("file type %o: %w", typ, ErrInvalid)
	}
}

// newChild returns a new inode of type typ created by c in dir, at time t.
// It takes its group and replication factor from dir: in a set-group-ID
// directory a new inode belongs to the directory's group, and a new
// directory is set-group-ID too, as on Linux (the kernel has already
// cleared the bit from a file's mode when the creator may not set it).
func newChild(txn kv.Txn, dir *Inode, typ, mode uint32, c Caller, t int64) (Inode, error) {
	n, err := newIno(txn)
	if err != nil {
		return Inode{}, err
	}
	child := Inode{Ino: n, Mode: typ | mode&0o7777, Uid: c.Uid, Gid: c.Gid, Nlink: 1,
		Atime: t, Mtime: t, Ctime: t, Btime: t, Replicas: dir.Replicas}
	if dir.Mode&syscall.S_ISGID != 0 {
		child.Gid = dir.Gid
		if typ == syscall.S_IFDIR {
			child.Mode |= syscall.S_ISGID
		}
	}
	return child, nil
}

// Make creates an inode of any type as s describes, named name in parent.
// Device nodes are stored like any other inode: a FUSE mount is nodev, so
// they only keep their number. It fails with ErrExist if the name is
// taken.
func (m *Manager) Make(parent Ino, name string, s NodeSpec, c Caller) (Inode, error) {
	if err := checkName(name); err != nil {
		return Inode{}, err
	}
	typ, err := checkType(s.Mode)
	if err != nil {
		return Inode{}, err
	}
	var child Inode
	err = m.meta.update(func(txn kv.Txn) error {
		dir, err := parentDir(txn, parent)
		if err != nil {
			return err
		}
		if _, ok, err := getDentry(txn, parent, name); err != nil {
			return err
		} else if ok {
			return fmt.Errorf("%s: %w", name, ErrExist)
		}
		t := now()
		if child, err = newChild(txn, &dir, typ, s.Mode, c, t); err != nil {
			return err
		}
		switch typ {
		case syscall.S_IFDIR:
			child.Nlink = 2
			child.Parent = parent
			dir.Nlink++
		case syscall.S_IFLNK:
			child.Target = s.Target
			child.Size = int64(len(s.Target))
		case syscall.S_IFCHR, syscall.S_IFBLK:
			child.Rdev = s.Rdev
		}
		dir.Mtime, dir.Ctime = t, t
		if err := putInode(txn, &child); err != nil {
			return err
		}
		if err := putInode(txn, &dir); err != nil {
			return err
		}
		return set(txn, dentryKey(parent, name), dentry{Ino: child.Ino, Type: typ}.encode())
	})
	m.live(&child)
	return child, err
}

// Tmpfile creates a regular file with no name in directory dir, as
// open(2) with O_TMPFILE does. Like an unlinked file it is an orphan: freed
// once nothing holds it, unless Link gives it a name first.
func (m *Manager) Tmpfile(dir Ino, mode uint32, c Caller) (Inode, error) {
	d, err := m.inode(dir)
	if err != nil {
		return Inode{}, err
	}
	if !d.IsDir() {
		return Inode{}, fmt.Errorf("inode %d: %w", dir, ErrNotDir)
	}
	return m.newOrphan(d, mode, c)
}

// Link gives inode ino the additional name name in parent.
func (m *Manager) Link(ino, parent Ino, name string) (Inode, error) {
	if err := checkName(name); err != nil {
		return Inode{}, err
	}
	var child Inode
	err := m.meta.update(func(txn kv.Txn) error {
		dir, err := parentDir(txn, parent)
		if err != nil {
			return err
		}
		if child, err = getInode(txn, ino); err != nil {
			return err
		}
		if child.IsDir() {
			return fmt.Errorf("hard link to a directory: %w", syscall.EPERM)
		}
		if _, ok, err := getDentry(txn, parent, name); err != nil {
			return err
		} else if ok {
			return fmt.Errorf("%s: %w", name, ErrExist)
		}
		t := now()
		child.Nlink++
		child.Ctime = t
		dir.Mtime, dir.Ctime = t, t
		if err := del(txn, inoKey(kOrphan, ino)); err != nil {
			return err
		}
		if err := putInode(txn, &child); err != nil {
			return err
		}
		if err := putInode(txn, &dir); err != nil {
			return err
		}
		return set(txn, dentryKey(parent, name), dentry{Ino: ino, Type: child.Mode & syscall.S_IFMT}.encode())
	})
	// The kernel takes the reply's attributes for the inode: an open
	// file's size must include its unflushed writes (an O_TMPFILE being
	// named, say).
	m.live(&child)
	return child, err
}

// dropName removes one link to child inside txn. When the last link goes
// the inode becomes an orphan, freed by freeOrphan once no handle has it
// open.
func dropName(txn kv.Txn, child *Inode, t int64) (orphaned bool, err error) {
	if child.IsDir() {
		child.Nlink = 0
	} else if child.Nlink > 0 {
		child.Nlink--
	}
	child.Ctime = t
	if err := putInode(txn, child); err != nil {
		return false, err
	}
	if child.Nlink > 0 {
		return false, nil
	}
	return true, set(txn, inoKey(kOrphan, child.Ino), nil)
}

// Unlink removes the name name (not a directory) from parent.
func (m *Manager) Unlink(parent Ino, name string) error {
	return m.remove(parent, name, false)
}

// Rmdir removes the empty directory name from parent.
func (m *Manager) Rmdir(parent Ino, name string) error {
	return m.remove(parent, name, true)
}

func (m *Manager) remove(parent Ino, name string, wantDir bool) error {
	var orphan Ino
	err := m.meta.update(func(txn kv.Txn) error {
		orphan = 0
		dir, err := parentDir(txn, parent)
		if err != nil {
			return err
		}
		e, ok, err := getDentry(txn, parent, name)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%s: %w", name, ErrNotFound)
		}
		child, err := getInode(txn, e.Ino)
		if err != nil {
			return err
		}
		if wantDir && !child.IsDir() {
			return fmt.Errorf("%s: %w", name, ErrNotDir)
		}
		if !wantDir && child.IsDir() {
			return fmt.Errorf("%s: %w", name, ErrIsDir)
		}
		if child.IsDir() {
			if empty, err := dirEmpty(txn, child.Ino); err != nil {
				return err
			} else if !empty {
				return fmt.Errorf("%s: %w", name, ErrNotEmpty)
			}
			dir.Nlink--
		}
		t := now()
		dir.Mtime, dir.Ctime = t, t
		if err := del(txn, dentryKey(parent, name)); err != nil {
			return err
		}
		if err := putInode(txn, &dir); err != nil {
			return err
		}
		o, err := dropName(txn, &child, t)
		if o {
			orphan = child.Ino
		}
		return err
	})
	if err != nil {
		return err
	}
	return m.maybeFree(orphan)
}

func dirEmpty(txn kv.Reader, ino Ino) (bool, error) {
	empty := true
	err := scan(txn, inoKey(kDentry, ino), true, func(_, _ []byte) error {
		empty = false
		return errStop
	})
	return empty, err
}
