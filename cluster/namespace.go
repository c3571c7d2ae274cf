package cluster

import (
	"fmt"
	"strings"
	"syscall"
	"time"

	badger "github.com/dgraph-io/badger/v4"
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
	err := m.meta.view(func(txn *badger.Txn) error {
		var err error
		i, err = getInode(txn, ino)
		return err
	})
	return i, err
}

// live applies the unflushed state of an open file to n.
func (m *Manager) live(n *Inode) {
	if !n.IsRegular() {
		return
	}
	if f := m.openFile(n.Ino); f != nil {
		f.overlay(n)
	}
}

// Lookup returns the inode named name in directory parent.
func (m *Manager) Lookup(parent Ino, name string) (Inode, error) {
	var i Inode
	err := m.meta.view(func(txn *badger.Txn) error {
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
	var out []DirEntry
	err := m.meta.view(func(txn *badger.Txn) error {
		dir, err := getInode(txn, ino)
		if err != nil {
			return err
		}
		if !dir.IsDir() {
			return ErrNotDir
		}
		prefix := inoKey(kDentry, ino)
		return scan(txn, prefix, false, func(k, v []byte) error {
			e, err := decodeDentry(v)
			if err != nil {
				return err
			}
			out = append(out, DirEntry{Name: string(k[len(prefix):]), Ino: e.Ino, Type: e.Type})
			return nil
		})
	})
	return out, err
}

// parentDir loads parent and checks that it is a directory.
func parentDir(txn *badger.Txn, parent Ino) (Inode, error) {
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
	if err := checkName(name); err != nil {
		return Inode{}, err
	}
	typ := mode & syscall.S_IFMT
	switch typ {
	case syscall.S_IFREG, syscall.S_IFDIR, syscall.S_IFLNK, syscall.S_IFIFO, syscall.S_IFSOCK:
	case 0:
		typ = syscall.S_IFREG
	default:
		return Inode{}, fmt.Errorf("file type %o: %w", typ, syscall.EPERM)
	}
	var child Inode
	err := m.meta.update(func(txn *badger.Txn) error {
		dir, err := parentDir(txn, parent)
		if err != nil {
			return err
		}
		if _, ok, err := getDentry(txn, parent, name); err != nil {
			return err
		} else if ok {
			return fmt.Errorf("%s: %w", name, ErrExist)
		}
		n, err := newIno(txn)
		if err != nil {
			return err
		}
		t := now()
		child = Inode{Ino: Ino(n), Mode: typ | mode&0o7777, Uid: c.Uid, Gid: c.Gid, Nlink: 1,
			Atime: t, Mtime: t, Ctime: t, Btime: t, Replicas: dir.Replicas}
		if typ == syscall.S_IFDIR {
			child.Nlink = 2
			child.Parent = parent
			dir.Nlink++
		}
		if typ == syscall.S_IFLNK {
			child.Target = target
			child.Size = int64(len(target))
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
	return child, err
}

// Link gives inode ino the additional name name in parent.
func (m *Manager) Link(ino, parent Ino, name string) (Inode, error) {
	if err := checkName(name); err != nil {
		return Inode{}, err
	}
	var child Inode
	err := m.meta.update(func(txn *badger.Txn) error {
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
	return child, err
}

// dropName removes one link to child inside txn. When the last link goes
// the inode becomes an orphan, freed by freeOrphan once no handle has it
// open.
func dropName(txn *badger.Txn, child *Inode, t int64) (orphaned bool, err error) {
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
	err := m.meta.update(func(txn *badger.Txn) error {
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

func dirEmpty(txn *badger.Txn, ino Ino) (bool, error) {
	empty := true
	err := scan(txn, inoKey(kDentry, ino), true, func(_, _ []byte) error {
		empty = false
		return errStop
	})
	return empty, err
}
