package fs

import (
	"context"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/dhdfs/dhdfs/cluster"
)

// dirBatch is how many entries a listing fetches from the metadata at a
// time. A kernel request holds up to a reader's buffer of entries (glibc:
// 32 KiB, some 500 names), so a batch is a fraction of one: a seek wastes
// little, and a long listing costs one metadata read per few dozen KiB.
const dirBatch = 128

// Offsets in a listing (telldir cookies): an entry's offset is where the
// listing resumes after it. "." and ".." come first, then the entries in
// name order, each given a cookie of its own the first time this handle
// lists it.
const (
	offDot     = 1 // after "."
	offDotDot  = 2 // after ".."
	offEntries = 3 // the first cookie of a named entry
)

// dirHandle is an open directory. It streams the directory from the
// metadata, dirBatch entries at a time, each batch resuming after the name
// listed last. A kernel request at any offset, after lseek or seekdir,
// resumes after the name that offset stands for, so a listing costs
// O(entries) however it is read, and entries that exist throughout are
// listed exactly once even while others are created or removed.
type dirHandle struct {
	n      *Node
	self   fuse.DirEntry // ".", set at open
	parent fuse.DirEntry // "..", set at open

	mu      sync.Mutex
	next    uint64             // guarded by mu: where the listing is: 0 at the start, else the offset of the entry listed last
	after   string             // guarded by mu: the name listed last; "" before the first name
	batch   []cluster.DirEntry // guarded by mu: fetched, not yet listed
	names   []string           // guarded by mu: names[c-offEntries] is the name of cookie c
	cookies map[string]uint64  // guarded by mu: the cookie of each name listed
	touched bool               // guarded by mu: the access time was recorded
}

// OpendirHandle implements gofs.NodeOpendirHandler.
func (n *Node) OpendirHandle(ctx context.Context, flags uint32) (_ gofs.FileHandle, _ uint32, errno syscall.Errno) {
	defer n.fs.observe("opendir", time.Now(), &errno)
	i, err := n.fs.m.GetAttr(n.ino())
	if err != nil {
		return nil, 0, n.errno("opendir", err)
	}
	if !i.IsDir() {
		return nil, 0, syscall.ENOTDIR
	}
	parent := i.Parent
	if parent == 0 {
		parent = i.Ino
	}
	return &dirHandle{
		n:       n,
		self:    fuse.DirEntry{Name: ".", Ino: uint64(i.Ino), Mode: syscall.S_IFDIR, Off: offDot},
		parent:  fuse.DirEntry{Name: "..", Ino: uint64(parent), Mode: syscall.S_IFDIR, Off: offDotDot},
		cookies: map[string]uint64{},
	}, 0, 0
}

// Readdirent implements gofs.FileReaddirenter: the next entry, or nil at
// the end. go-fuse calls it under its own lock of the handle.
func (d *dirHandle) Readdirent(ctx context.Context) (_ *fuse.DirEntry, errno syscall.Errno) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.touch()
	switch d.next {
	case 0:
		d.next = offDot
		e := d.self
		return &e, 0
	case offDot:
		d.next = offDotDot
		e := d.parent
		return &e, 0
	}
	if len(d.batch) == 0 {
		// Fetched afresh at the end of each listing too, so that a
		// directory read again after new entries shows them.
		batch, err := d.n.fs.m.ReadDirAfter(d.n.ino(), d.after, dirBatch)
		if err != nil {
			return nil, d.n.errno("readdir", err)
		}
		d.n.fs.dirScanned.Add(int64(len(batch)))
		d.batch = batch
		if len(batch) == 0 {
			return nil, 0
		}
	}
	ce := d.batch[0]
	d.batch = d.batch[1:]
	d.after = ce.Name
	d.next = d.cookie(ce.Name)
	return &fuse.DirEntry{Name: ce.Name, Ino: uint64(ce.Ino), Mode: ce.Type, Off: d.next}, 0
}

// cookie returns the offset that resumes after name, the same each time
// this handle lists name. d.mu is held.
func (d *dirHandle) cookie(name string) uint64 {
	if c, ok := d.cookies[name]; ok {
		return c
	}
	c := offEntries + uint64(len(d.names))
	d.names = append(d.names, name)
	d.cookies[name] = c
	return c
}

// Seekdir implements gofs.FileSeekdirer: the next Readdirent continues at
// off, an offset this handle gave out before (or 0, the start).
func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.batch = nil
	switch {
	case off <= offDotDot:
		d.next, d.after = off, ""
	case off-offEntries < uint64(len(d.names)):
		d.next, d.after = off, d.names[off-offEntries]
	default:
		return syscall.EINVAL
	}
	return 0
}

// touch records the first read of the listing as an access to the
// directory (see Config.Atime). d.mu is held.
func (d *dirHandle) touch() {
	if d.touched {
		return
	}
	d.touched = true
	d.n.touchAtime(true)
}
