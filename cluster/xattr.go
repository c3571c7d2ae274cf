package cluster

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/dhdfs/dhdfs/cluster/kv"
)

// Extended attributes are stored per inode under 'x' ino name. Two names
// are dhdfs's own: user.dhdfs.replicas reads and sets the replication
// factor (new children inherit a directory's), and the read-only
// user.dhdfs.locations lists each chunk's drives. They answer when asked
// for by name but are not listed: they describe this pool, so copies
// (cp -a, rsync -X, tar --xattrs) must not carry them elsewhere, and a
// copy into the pool must not try to set them.
const (
	XattrReplicas  = "user.dhdfs.replicas"
	XattrLocations = "user.dhdfs.locations"
	// XattrPrefix starts the names of dhdfs's own attributes.
	XattrPrefix = "user.dhdfs."
	// MaxXattrValue is Linux's limit on one attribute value.
	MaxXattrValue = 64 << 10
)

func checkXattrName(name string) error {
	switch {
	case name == "" || len(name) > MaxNameLen:
		return fmt.Errorf("attribute name %q: %w", name, ErrInvalid)
	case strings.HasPrefix(name, "system."):
		return fmt.Errorf("attribute %s: %w", name, ErrNotSupported)
	}
	return nil
}

// XattrFlags are setxattr(2)'s flags.
type XattrFlags uint32

const (
	XattrCreate  XattrFlags = 1 // XATTR_CREATE: fail if it exists
	XattrReplace XattrFlags = 2 // XATTR_REPLACE: fail if it does not
)

var (
	// ErrNoAttr means the extended attribute does not exist (ENODATA).
	ErrNoAttr = errors.New("no such attribute")
	// ErrNotSupported is returned for attribute namespaces dhdfs does not
	// store, such as POSIX ACLs (ENOTSUP).
	ErrNotSupported = errors.New("operation not supported")
)

// absentXattrs remembers attributes found absent. The kernel asks for
// security.capability before every write(2) to a FUSE file (to clear it),
// and a miss costs a metadata lookup through every level of the store:
// 19 µs of a 550 µs append-and-fsync. Only SetXattr adds an attribute,
// and it forgets the name after its commit; gen keeps a lookup that ran
// before that commit from recording its miss afterwards.
type absentXattrs struct {
	mu    sync.Mutex
	gen   uint64                   // guarded by mu: bumped by every SetXattr
	names map[absentXattr]struct{} // guarded by mu
	// beforeMiss, if set (tests), runs between a lookup's miss and its
	// recording.
	beforeMiss func()
}

type absentXattr struct {
	ino  Ino
	name string
}

// absentMax bounds the names remembered; past it they are forgotten.
const absentMax = 4096

func (a *absentXattrs) known(ino Ino, name string) (absent bool, gen uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, absent = a.names[absentXattr{ino, name}]
	return absent, a.gen
}

// missed records a miss of a lookup that started at gen.
func (a *absentXattrs) missed(ino Ino, name string, gen uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.gen != gen {
		return
	}
	if a.names == nil || len(a.names) >= absentMax {
		a.names = map[absentXattr]struct{}{}
	}
	a.names[absentXattr{ino, name}] = struct{}{}
}

// set forgets name of ino, after a commit that may have added it.
func (a *absentXattrs) set(ino Ino, name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.gen++
	delete(a.names, absentXattr{ino, name})
}

// GetXattr returns the value of attribute name of ino.
func (m *Manager) GetXattr(ino Ino, name string) ([]byte, error) {
	if err := checkXattrName(name); err != nil {
		return nil, err
	}
	switch name {
	case XattrReplicas:
		n, err := m.inode(ino)
		if err != nil {
			return nil, err
		}
		return []byte(strconv.Itoa(m.wantFor(&n))), nil
	case XattrLocations:
		return m.locationsXattr(ino)
	}
	absent, gen := m.absent.known(ino, name)
	if absent {
		return nil, fmt.Errorf("%s: %w", name, ErrNoAttr)
	}
	var v []byte
	err := m.meta.view(func(txn kv.Reader) error {
		val, ok, err := get(txn, xattrKey(ino, name))
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%s: %w", name, ErrNoAttr)
		}
		v = val
		return nil
	})
	if errors.Is(err, ErrNoAttr) {
		if m.absent.beforeMiss != nil {
			m.absent.beforeMiss()
		}
		m.absent.missed(ino, name, gen)
	}
	return v, err
}

// SetXattr sets attribute name of ino to value.
func (m *Manager) SetXattr(ino Ino, name string, value []byte, flags XattrFlags) error {
	if err := checkXattrName(name); err != nil {
		return err
	}
	if len(value) > MaxXattrValue {
		return fmt.Errorf("attribute %s of %d bytes: %w", name, len(value), ErrInvalid)
	}
	switch {
	case name == XattrLocations:
		return fmt.Errorf("%s is read-only: %w", name, ErrInvalid)
	case name != XattrReplicas && strings.HasPrefix(name, XattrPrefix):
		return fmt.Errorf("%s: names under %s are reserved for the pool: %w", name, XattrPrefix, ErrInvalid)
	case name == XattrReplicas:
		r, err := strconv.Atoi(strings.TrimSpace(string(value)))
		if err != nil || r < 1 || r > MaxReplicas {
			return fmt.Errorf("%s must be a number from 1 to %d: %w", name, MaxReplicas, ErrInvalid)
		}
		err = m.meta.update(func(txn kv.Txn) error {
			n, err := getInode(txn, ino)
			if err != nil {
				return err
			}
			n.Replicas, n.Ctime = uint8(r), now()
			return putInode(txn, &n)
		})
		if err == nil {
			if f := m.openFile(ino); f != nil {
				f.setWant(r)
			}
			m.kickHealer() // existing chunks gain or lose copies
		}
		return err
	}
	defer m.absent.set(ino, name)
	return m.meta.update(func(txn kv.Txn) error {
		_, exists, err := get(txn, xattrKey(ino, name))
		if err != nil {
			return err
		}
		switch {
		case flags&XattrCreate != 0 && exists:
			return fmt.Errorf("%s: %w", name, ErrExist)
		case flags&XattrReplace != 0 && !exists:
			return fmt.Errorf("%s: %w", name, ErrNoAttr)
		}
		if err := touchCtime(txn, ino); err != nil {
			return err
		}
		return set(txn, xattrKey(ino, name), value)
	})
}

// touchCtime records a change of ino's attributes: setting or removing an
// extended attribute changes ctime, as chmod does.
func touchCtime(txn kv.Txn, ino Ino) error {
	n, err := getInode(txn, ino)
	if err != nil {
		return err
	}
	n.Ctime = now()
	return putInode(txn, &n)
}

// RemoveXattr deletes attribute name of ino.
func (m *Manager) RemoveXattr(ino Ino, name string) error {
	if err := checkXattrName(name); err != nil {
		return err
	}
	if name == XattrReplicas {
		// Back to inheriting the pool default.
		return m.meta.update(func(txn kv.Txn) error {
			n, err := getInode(txn, ino)
			if err != nil {
				return err
			}
			if n.Replicas == 0 {
				return fmt.Errorf("%s: %w", name, ErrNoAttr)
			}
			n.Replicas, n.Ctime = 0, now()
			return putInode(txn, &n)
		})
	}
	return m.meta.update(func(txn kv.Txn) error {
		_, ok, err := get(txn, xattrKey(ino, name))
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%s: %w", name, ErrNoAttr)
		}
		if err := touchCtime(txn, ino); err != nil {
			return err
		}
		return del(txn, xattrKey(ino, name))
	})
}

// ListXattr lists the attribute names of ino, without dhdfs's own (see
// XattrPrefix).
func (m *Manager) ListXattr(ino Ino) ([]string, error) {
	var names []string
	err := m.meta.view(func(txn kv.Reader) error {
		if _, err := getInode(txn, ino); err != nil {
			return err
		}
		prefix := inoKey(kXattr, ino)
		return scan(txn, prefix, true, func(k, _ []byte) error {
			names = append(names, string(k[len(prefix):]))
			return nil
		})
	})
	return names, err
}

func dropXattrs(txn kv.Txn, ino Ino) error {
	var keys [][]byte
	err := scan(txn, inoKey(kXattr, ino), true, func(k, _ []byte) error {
		keys = append(keys, append([]byte{}, k...))
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := del(txn, k); err != nil {
			return err
		}
	}
	return nil
}

// locationsXattr renders "INDEX CHUNK DRIVE,DRIVE" lines, cut short with a
// final "... N more chunks" line when the value would pass the xattr size
// limit (dhdfs stat --chunks lists them all).
func (m *Manager) locationsXattr(ino Ino) ([]byte, error) {
	n, err := m.inode(ino)
	if err != nil {
		return nil, err
	}
	if !n.IsRegular() {
		return nil, fmt.Errorf("%s: %w", XattrLocations, ErrNoAttr)
	}
	locs, err := m.ChunkLocations(ino)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	for i, l := range locs {
		line := fmt.Sprintf("%d %s %s\n", l.Index, l.ID[:16], strings.Join(l.Drives, ","))
		if b.Len()+len(line) > MaxXattrValue-64 {
			fmt.Fprintf(&b, "... %d more chunks\n", len(locs)-i)
			break
		}
		b.WriteString(line)
	}
	return []byte(b.String()), nil
}
