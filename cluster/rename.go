package cluster

import (
	"fmt"
	"syscall"

	"github.com/dhdfs/dhdfs/cluster/kv"
)

// RenameFlags are the flags of renameat2(2).
type RenameFlags uint32

const (
	RenameNoReplace RenameFlags = 1 // RENAME_NOREPLACE
	RenameExchange  RenameFlags = 2 // RENAME_EXCHANGE
	// RenameWhiteout leaves a whiteout (a character device 0:0, as
	// overlayfs expects) at the old name, owned by the caller.
	RenameWhiteout RenameFlags = 4 // RENAME_WHITEOUT
)

// Rename moves oldName in oldParent to newName in newParent atomically,
// replacing a target of a compatible type unless flags say otherwise.
func (m *Manager) Rename(oldParent Ino, oldName string, newParent Ino, newName string, flags RenameFlags) error {
	return m.RenameAs(oldParent, oldName, newParent, newName, flags, Caller{})
}

// RenameAs is Rename made by c, who owns the whiteout RenameWhiteout
// leaves.
func (m *Manager) RenameAs(oldParent Ino, oldName string, newParent Ino, newName string, flags RenameFlags, c Caller) error {
	if err := checkName(newName); err != nil {
		return err
	}
	if flags&^(RenameNoReplace|RenameExchange|RenameWhiteout) != 0 ||
		flags&RenameExchange != 0 && flags&(RenameNoReplace|RenameWhiteout) != 0 {
		return fmt.Errorf("rename flags %#x: %w", flags, ErrInvalid)
	}
	var orphan Ino
	err := m.meta.update(func(txn kv.Txn) error {
		orphan = 0
		src, ok, err := getDentry(txn, oldParent, oldName)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%s: %w", oldName, ErrNotFound)
		}
		dst, dstExists, err := getDentry(txn, newParent, newName)
		if err != nil {
			return err
		}
		if dstExists && dst.Ino == src.Ino {
			return nil // both names link the same inode: POSIX says do nothing
		}
		switch {
		case flags&RenameNoReplace != 0 && dstExists:
			return fmt.Errorf("%s: %w", newName, ErrExist)
		case flags&RenameExchange != 0 && !dstExists:
			return fmt.Errorf("%s: %w", newName, ErrNotFound)
		}
		srcNode, err := getInode(txn, src.Ino)
		if err != nil {
			return err
		}
		if srcNode.IsDir() {
			if err := notAncestor(txn, srcNode.Ino, newParent); err != nil {
				return err
			}
		}
		t := now()
		if flags&RenameExchange != 0 {
			dstNode, err := getInode(txn, dst.Ino)
			if err != nil {
				return err
			}
			if dstNode.IsDir() {
				if err := notAncestor(txn, dstNode.Ino, oldParent); err != nil {
					return err
				}
			}
			if err := set(txn, dentryKey(newParent, newName), src.encode()); err != nil {
				return err
			}
			if err := set(txn, dentryKey(oldParent, oldName), dst.encode()); err != nil {
				return err
			}
			if err := moveDir(txn, &srcNode, oldParent, newParent, t); err != nil {
				return err
			}
			if err := moveDir(txn, &dstNode, newParent, oldParent, t); err != nil {
				return err
			}
			return touchDirs(txn, t, oldParent, newParent)
		}
		if dstExists {
			dstNode, err := getInode(txn, dst.Ino)
			if err != nil {
				return err
			}
			switch {
			case srcNode.IsDir() && !dstNode.IsDir():
				return fmt.Errorf("%s: %w", newName, ErrNotDir)
			case !srcNode.IsDir() && dstNode.IsDir():
				return fmt.Errorf("%s: %w", newName, ErrIsDir)
			case dstNode.IsDir():
				if empty, err := dirEmpty(txn, dstNode.Ino); err != nil {
					return err
				} else if !empty {
					return fmt.Errorf("%s: %w", newName, ErrNotEmpty)
				}
				if err := adjustNlink(txn, newParent, -1); err != nil {
					return err
				}
			}
			o, err := dropName(txn, &dstNode, t)
			if err != nil {
				return err
			}
			if o {
				orphan = dstNode.Ino
			}
		}
		if err := del(txn, dentryKey(oldParent, oldName)); err != nil {
			return err
		}
		if err := set(txn, dentryKey(newParent, newName), src.encode()); err != nil {
			return err
		}
		if err := moveDir(txn, &srcNode, oldParent, newParent, t); err != nil {
			return err
		}
		if flags&RenameWhiteout != 0 {
			if err := whiteout(txn, oldParent, oldName, c, t); err != nil {
				return err
			}
		}
		return touchDirs(txn, t, oldParent, newParent)
	})
	if err != nil {
		return err
	}
	return m.maybeFree(orphan)
}

// whiteout names a new whiteout name in parent: a character device with
// device number 0 and no permissions, as ext4 and tmpfs make them.
func whiteout(txn kv.Txn, parent Ino, name string, c Caller, t int64) error {
	dir, err := parentDir(txn, parent)
	if err != nil {
		return err
	}
	w, err := newChild(txn, &dir, syscall.S_IFCHR, 0, c, t)
	if err != nil {
		return err
	}
	if err := putInode(txn, &w); err != nil {
		return err
	}
	return set(txn, dentryKey(parent, name), dentry{Ino: w.Ino, Type: syscall.S_IFCHR}.encode())
}

// notAncestor fails with ErrInvalid if dir is dest or one of its ancestors:
// a directory cannot move into its own subtree.
func notAncestor(txn kv.Reader, dir, dest Ino) error {
	for cur := dest; ; {
		if cur == dir {
			return fmt.Errorf("move a directory into itself: %w", ErrInvalid)
		}
		if cur == RootIno {
			return nil
		}
		n, err := getInode(txn, cur)
		if err != nil {
			return err
		}
		if n.Parent == 0 || n.Parent == cur {
			return nil
		}
		cur = n.Parent
	}
}

// moveDir updates a renamed inode: its ctime, and for a directory its
// parent pointer and both parents' link counts ("..").
func moveDir(txn kv.Txn, n *Inode, from, to Ino, t int64) error {
	n.Ctime = t
	if n.IsDir() && from != to {
		n.Parent = to
		if err := adjustNlink(txn, from, -1); err != nil {
			return err
		}
		if err := adjustNlink(txn, to, +1); err != nil {
			return err
		}
	}
	return putInode(txn, n)
}

func adjustNlink(txn kv.Txn, ino Ino, delta int) error {
	n, err := getInode(txn, ino)
	if err != nil {
		return err
	}
	n.Nlink = uint32(int(n.Nlink) + delta)
	return putInode(txn, &n)
}

func touchDirs(txn kv.Txn, t int64, dirs ...Ino) error {
	for i, ino := range dirs {
		if i > 0 && ino == dirs[0] {
			continue
		}
		n, err := getInode(txn, ino)
		if err != nil {
			return err
		}
		n.Mtime, n.Ctime = t, t
		if err := putInode(txn, &n); err != nil {
			return err
		}
	}
	return nil
}
