package nodes

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Memory drives, mem://NAME[?capacity=BYTES], are kept in this process's
// memory, for tests: a pool on them and on mem:// metadata runs without
// touching a disk. A name opens the same drive again — its chunks,
// identity and mirror area outlive the store and the pool that used them,
// as a disk's would — until ForgetMemDrives. Each is a failure domain of
// its own. They keep no journal: the pool syncs their stores instead,
// which costs nothing.
func init() { RegisterDrive("mem", openMemDrive) }

// memDriveCapacity is a memory drive's size unless its URL says.
const memDriveCapacity = 1 << 40

var memDrives = struct {
	mu sync.Mutex
	m  map[string]*memDrive // by name
}{m: map[string]*memDrive{}}

// ForgetMemDrives drops the memory drives whose names start with prefix.
func ForgetMemDrives(prefix string) {
	memDrives.mu.Lock()
	defer memDrives.mu.Unlock()
	for name := range memDrives.m {
		if strings.HasPrefix(name, prefix) {
			delete(memDrives.m, name)
		}
	}
}

func openMemDrive(u *url.URL) (Drive, error) {
	name := u.Host + u.Path
	if name == "" {
		return nil, errors.New("mem:// drive without a name")
	}
	capacity := int64(memDriveCapacity)
	if c := u.Query().Get("capacity"); c != "" {
		n, err := strconv.ParseInt(c, 10, 64)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("mem:// drive %s: capacity %q is not a number of bytes", name, c)
		}
		capacity = n
	}
	memDrives.mu.Lock()
	defer memDrives.mu.Unlock()
	d := memDrives.m[name]
	if d == nil {
		d = &memDrive{name: name, loc: u.String(), capacity: capacity, chunks: map[ChunkID][]byte{}, files: memArea{files: map[string]memFile{}}}
		memDrives.m[name] = d
	}
	return d, nil
}

type memDrive struct {
	name, loc string
	capacity  int64
	files     memArea

	mu     sync.Mutex
	id     *Identity          // guarded by mu
	chunks map[ChunkID][]byte // guarded by mu while no store is open, then by the store
	store  *MemStore          // guarded by mu: the last store opened
}

func (d *memDrive) Location() string { return d.loc }

func (d *memDrive) Identity() (Identity, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.id == nil {
		return Identity{}, fmt.Errorf("%s: %w", d.loc, ErrNotDrive)
	}
	return *d.id, nil
}

func (d *memDrive) SetIdentity(id Identity) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	id.Format = IdentityFormat
	d.id = &id
	return nil
}

// OpenStore hands the drive's chunks to a new store; one store is open at
// a time, as a directory's lock allows.
func (d *memDrive) OpenStore(Options) (Store, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.store != nil {
		d.store.mu.Lock()
		closed := d.store.closed
		d.store.mu.Unlock()
		if !closed {
			return nil, fmt.Errorf("%s: the store is open already", d.loc)
		}
	}
	s := NewMemStore(d.capacity)
	s.chunks = d.chunks
	for _, c := range d.chunks {
		s.used += int64(len(c))
	}
	d.store = s
	return s, nil
}

func (d *memDrive) OpenJournal() (*Journal, error) {
	return nil, fmt.Errorf("%s: a memory drive keeps no journal", d.loc)
}

func (d *memDrive) Space() (free, total int64, err error) {
	d.mu.Lock()
	s := d.store
	d.mu.Unlock()
	if s != nil {
		if u, err := s.Usage(); err == nil {
			return u.Free, u.Total, nil
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	used := int64(0)
	for _, c := range d.chunks {
		used += int64(len(c))
	}
	return max(d.capacity-used, 0), d.capacity, nil
}

func (d *memDrive) FailureDomain() (string, error) { return "mem:" + d.name, nil }

func (d *memDrive) Mirror() FileArea { return &d.files }

func (d *memDrive) Destroy() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.id = nil
	d.chunks = map[ChunkID][]byte{}
	return nil
}

func (d *memDrive) Retire() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.id = nil
	return nil
}

// memArea is a FileArea in memory.
type memArea struct {
	mu    sync.Mutex
	files map[string]memFile // guarded by mu
}

type memFile struct {
	data []byte
	mod  time.Time
}

func (a *memArea) List() ([]string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var names []string
	for name := range a.files {
		names = append(names, name)
	}
	slices.Sort(names)
	return names, nil
}

func (a *memArea) Read(name string) ([]byte, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f, ok := a.files[name]
	if !ok {
		return nil, &os.PathError{Op: "read", Path: name, Err: os.ErrNotExist}
	}
	return slices.Clone(f.data), nil
}

func (a *memArea) Write(name string, data []byte) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.files[name] = memFile{data: slices.Clone(data), mod: time.Now()}
	return nil
}

func (a *memArea) Remove(name string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.files, name)
	return nil
}

func (a *memArea) ModTime(name string) (time.Time, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f, ok := a.files[name]
	if !ok {
		return time.Time{}, &os.PathError{Op: "stat", Path: name, Err: os.ErrNotExist}
	}
	return f.mod, nil
}
