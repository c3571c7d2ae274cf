package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"syscall"

	"github.com/dhdfs/dhdfs/cluster/kv"
)

// SetChangeHook registers a function called after the path API changes
// the name name in directory parent, so that a mount can tell the kernel
// to drop what it cached. Changes made through the inode API (by the mount
// itself) do not call it.
func (m *Manager) SetChangeHook(h func(parent Ino, name string)) {
	m.changeHook.Store(&h)
}

func (m *Manager) changed(parent Ino, name string) {
	if h := m.changeHook.Load(); h != nil && *h != nil {
		(*h)(parent, name)
	}
}

// The path API serves the CLI (put, get, ls, rm, mkdir, stat) on top of the
// inode API the filesystem uses. Paths are absolute within the pool and
// symlinks are not followed.

// splitPath returns the components of the absolute pool path p, without
// empty ones and ".", and with "..": those are resolved as the kernel
// does, against what the path named so far (walk), not by editing the
// string: "/a/../b" needs a directory "/a".
func splitPath(p string) ([]string, error) {
	if !strings.HasPrefix(p, "/") {
		return nil, fmt.Errorf("%q: pool paths start with '/': %w", p, ErrInvalid)
	}
	var parts []string
	for _, name := range strings.Split(p, "/") {
		if name != "" && name != "." {
			parts = append(parts, name)
		}
	}
	return parts, nil
}

// walk resolves the path components parts from the root. Each component
// is looked up in the directory the components before it named; ".."
// goes back to that directory's parent, and above the root is refused
// (the kernel stays at "/", which would quietly turn "/../../x" into
// "/x"). missing, if set, is called for a name not found and may create
// it (mkdir -p). It returns the inode named and the path it resolved.
func (m *Manager) walk(parts []string, missing func(dir Inode, name, at string) (Inode, error)) (Inode, string, error) {
	cur, err := m.GetAttr(RootIno)
	if err != nil {
		return cur, "/", err
	}
	stack := []Inode{}
	var names []string
	at := func() string { return "/" + strings.Join(names, "/") }
	for _, name := range parts {
		if !cur.IsDir() {
			return cur, at(), fmt.Errorf("%s: %w", at(), ErrNotDir)
		}
		if name == ".." {
			if len(stack) == 0 {
				return cur, at(), fmt.Errorf("%s/..: above the pool's root: %w", strings.TrimSuffix(at(), "/"), ErrInvalid)
			}
			cur, stack, names = stack[len(stack)-1], stack[:len(stack)-1], names[:len(names)-1]
			continue
		}
		next, err := m.Lookup(cur.Ino, name)
		names = append(names, name)
		if errors.Is(err, ErrNotFound) && missing != nil {
			next, err = missing(cur, name, at())
		}
		if errors.Is(err, ErrNotFound) {
			return cur, at(), fmt.Errorf("%s: %w", at(), ErrNotFound)
		}
		if err != nil {
			return cur, at(), err
		}
		stack = append(stack, cur)
		cur = next
	}
	return cur, at(), nil
}

// Resolve returns the inode at an absolute pool path.
func (m *Manager) Resolve(p string) (Inode, error) {
	parts, err := splitPath(p)
	if err != nil {
		return Inode{}, err
	}
	n, _, err := m.walk(parts, nil)
	return n, err
}

// resolveParent returns the directory that holds p and p's last name,
// which must be a name: not "..", nor the root.
func (m *Manager) resolveParent(p string) (Inode, string, error) {
	parts, err := splitPath(p)
	if err != nil {
		return Inode{}, "", err
	}
	if len(parts) == 0 {
		return Inode{}, "", fmt.Errorf("%q is the root: %w", p, ErrInvalid)
	}
	last := parts[len(parts)-1]
	if last == ".." {
		return Inode{}, "", fmt.Errorf("%q ends in '..', not a name: %w", p, ErrInvalid)
	}
	dir, at, err := m.walk(parts[:len(parts)-1], nil)
	if err != nil {
		return dir, "", err
	}
	if !dir.IsDir() {
		return dir, "", fmt.Errorf("%s: %w", at, ErrNotDir)
	}
	return dir, last, nil
}

// writable refuses a change to p when the pool is mounted read-only.
func (m *Manager) writable(p string) error {
	if m.opts.ReadOnly {
		return fmt.Errorf("%s: %w", p, ErrReadOnly)
	}
	return nil
}

// MkdirPath creates the directory p; with parents, also its missing
// ancestors, and an existing directory at p is not an error. A mode
// without permission bits (none given) means 0755, as mkdir(1)'s default
// under the usual umask, not d---------.
func (m *Manager) MkdirPath(p string, parents bool, mode uint32, c Caller) (Inode, error) {
	if err := m.writable(p); err != nil {
		return Inode{}, err
	}
	if mode&0o7777 == 0 {
		mode |= 0o755
	}
	mode &= 0o7777
	if !parents {
		dir, name, err := m.resolveParent(p)
		if err != nil {
			return Inode{}, err
		}
		n, err := m.Mknod(dir.Ino, name, syscall.S_IFDIR|mode, c, "")
		if errors.Is(err, ErrExist) {
			return n, fmt.Errorf("%s: %w", p, ErrExist)
		}
		m.changed(dir.Ino, name)
		return n, err
	}
	parts, err := splitPath(p)
	if err != nil {
		return Inode{}, err
	}
	n, at, err := m.walk(parts, func(dir Inode, name, at string) (Inode, error) {
		next, err := m.Mknod(dir.Ino, name, syscall.S_IFDIR|mode, c, "")
		if errors.Is(err, ErrExist) { // created meanwhile by someone else
			next, err = m.Lookup(dir.Ino, name)
		}
		m.changed(dir.Ino, name)
		return next, err
	})
	if err == nil && !n.IsDir() {
		err = fmt.Errorf("%s: %w", at, ErrNotDir)
	}
	return n, err
}

// PutFile writes r to a new file at p, replacing any file there only once
// every byte is stored: readers see the old content or the new, never a
// mix, and a failed or interrupted put leaves the old file untouched.
func (m *Manager) PutFile(ctx context.Context, p string, r io.Reader, mode uint32, c Caller) (Inode, error) {
	if err := m.writable(p); err != nil {
		return Inode{}, err
	}
	dir, name, err := m.resolveParent(p)
	if err != nil {
		return Inode{}, err
	}
	if err := checkName(name); err != nil {
		return Inode{}, err
	}
	if existing, err := m.Lookup(dir.Ino, name); err == nil && existing.IsDir() {
		return Inode{}, fmt.Errorf("%s: %w", p, ErrIsDir)
	}
	n, err := m.newOrphan(dir, mode, c)
	if err != nil {
		return Inode{}, err
	}
	w := m.newWriter(ctx, n.Ino, m.wantFor(&n))
	if _, err := io.Copy(w, r); err != nil {
		w.Abort()
		return Inode{}, errors.Join(fmt.Errorf("put %s: %w", p, err), m.freeOrphan(n.Ino))
	}
	if _, err := w.Close(); err != nil {
		return Inode{}, errors.Join(fmt.Errorf("put %s: %w", p, err), m.freeOrphan(n.Ino))
	}
	replaced, err := m.linkOrphan(dir.Ino, name, n.Ino)
	if err != nil {
		return Inode{}, errors.Join(fmt.Errorf("put %s: %w", p, err), m.freeOrphan(n.Ino))
	}
	if err := m.meta.sync(); err != nil {
		return Inode{}, err
	}
	m.changed(dir.Ino, name)
	if err := m.maybeFree(replaced); err != nil {
		m.log.Warn("free replaced file", "path", p, "err", err)
	}
	return m.GetAttr(n.Ino)
}

// newOrphan creates a regular file with no name, marked as an orphan so
// that a crash before linkOrphan frees it at the next open. It takes its
// group from dir as a named file would (see newChild).
func (m *Manager) newOrphan(dir Inode, mode uint32, c Caller) (Inode, error) {
	var n Inode
	err := m.meta.update(func(txn kv.Txn) error {
		var err error
		if n, err = newChild(txn, &dir, syscall.S_IFREG, mode, c, now()); err != nil {
			return err
		}
		// As chmod(2): the set-group-ID bit only for a member of the
		// file's group (it takes a setgid directory's group) or root.
		// The owner may set set-user-ID on their own file.
		if n.Gid != c.Gid && c.Uid != 0 {
			n.Mode &^= syscall.S_ISGID
		}
		n.Nlink = 0
		if err := putInode(txn, &n); err != nil {
			return err
		}
		return set(txn, inoKey(kOrphan, n.Ino), nil)
	})
	return n, err
}

// linkOrphan names the orphan ino name in parent, replacing a non-directory
// of that name, whose inode it returns if that lost its last name.
func (m *Manager) linkOrphan(parent Ino, name string, ino Ino) (Ino, error) {
	var replaced Ino
	err := m.meta.update(func(txn kv.Txn) error {
		replaced = 0
		dir, err := parentDir(txn, parent)
		if err != nil {
			return err
		}
		n, err := getInode(txn, ino)
		if err != nil {
			return err
		}
		t := now()
		if e, ok, err := getDentry(txn, parent, name); err != nil {
			return err
		} else if ok {
			old, err := getInode(txn, e.Ino)
			if err != nil {
				return err
			}
			if old.IsDir() {
				return fmt.Errorf("%s: %w", name, ErrIsDir)
			}
			if o, err := dropName(txn, &old, t); err != nil {
				return err
			} else if o {
				replaced = old.Ino
			}
		}
		n.Nlink, n.Ctime = 1, t
		dir.Mtime, dir.Ctime = t, t
		if err := putInode(txn, &n); err != nil {
			return err
		}
		if err := putInode(txn, &dir); err != nil {
			return err
		}
		if err := del(txn, inoKey(kOrphan, ino)); err != nil {
			return err
		}
		return set(txn, dentryKey(parent, name), dentry{Ino: ino, Type: syscall.S_IFREG}.encode())
	})
	return replaced, err
}

// GetFile streams the regular file at p to w.
func (m *Manager) GetFile(ctx context.Context, p string, w io.Writer) (int64, error) {
	n, err := m.Resolve(p)
	if err != nil {
		return 0, err
	}
	if !n.IsRegular() {
		return 0, fmt.Errorf("%s: not a regular file: %w", p, ErrIsDir)
	}
	return m.WriteTo(ctx, n.Ino, w)
}

// RemovePath removes the file or empty directory at p; with recursive, a
// directory and everything below it.
func (m *Manager) RemovePath(p string, recursive bool) error {
	if err := m.writable(p); err != nil {
		return err
	}
	dir, name, err := m.resolveParent(p)
	if err != nil {
		return err
	}
	n, err := m.Lookup(dir.Ino, name)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	defer m.changed(dir.Ino, name)
	if !n.IsDir() {
		return m.Unlink(dir.Ino, name)
	}
	if recursive {
		if err := m.removeTree(n.Ino); err != nil {
			return err
		}
	}
	if err := m.Rmdir(dir.Ino, name); err != nil {
		if errors.Is(err, ErrNotEmpty) {
			err = ErrNotEmpty // Rmdir's message names it too
		}
		return fmt.Errorf("%s: %w", p, err)
	}
	return nil
}

func (m *Manager) removeTree(ino Ino) error {
	entries, err := m.ReadDir(ino)
	if err != nil {
		return err
	}
	for _, e := range entries {
		m.changed(ino, e.Name)
		if e.Type == syscall.S_IFDIR {
			if err := m.removeTree(e.Ino); err != nil {
				return err
			}
			if err := m.Rmdir(ino, e.Name); err != nil {
				return err
			}
			continue
		}
		if err := m.Unlink(ino, e.Name); err != nil {
			return err
		}
	}
	return nil
}

// Entry is a name with its attributes, as ls shows it.
type Entry struct {
	Name  string
	Inode Inode
}

// List returns the entries of the directory at p, or p itself if it is
// not a directory.
func (m *Manager) List(p string) ([]Entry, error) {
	n, err := m.Resolve(p)
	if err != nil {
		return nil, err
	}
	if !n.IsDir() {
		return []Entry{{Name: path.Base(p), Inode: n}}, nil
	}
	entries, err := m.ReadDir(n.Ino)
	if err != nil {
		return nil, err
	}
	out := make([]Entry, 0, len(entries))
	for _, e := range entries {
		child, err := m.GetAttr(e.Ino)
		if err != nil {
			return nil, err
		}
		out = append(out, Entry{Name: e.Name, Inode: child})
	}
	return out, nil
}
