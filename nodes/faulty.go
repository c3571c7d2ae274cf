package nodes

import (
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Faults are the misbehaviours a Faulty store injects.
type Faults struct {
	// ReadErr, if set, is returned by Get, GetRange and Has.
	ReadErr error
	// WriteErr, if set, is returned by Put, Delete and Sync.
	WriteErr error
	// Corrupt flips one bit, at a different place each time, of every chunk
	// Get or GetRange returns: the smallest damage a checksum must catch.
	Corrupt bool
	// Latency delays every call.
	Latency time.Duration
	// Hang blocks every call until the faults are changed: a hung disk.
	Hang bool
	// Capacity, if positive, makes Put fail with ENOSPC once that many
	// bytes were put since the faults were set: a drive filling up.
	Capacity int64
	// Flap, if positive, alternates the drive between failing every call
	// with EIO and working, each for that long: a loose cable.
	Flap time.Duration
}

// Faulty wraps a Store and injects the faults set with Set. It is for tests
// and for fault-injection runs (dhdfs mount --debug-faults); with no faults
// set it passes calls through.
type Faulty struct {
	Store
	mu     sync.Mutex
	faults Faults    // guarded by mu
	since  time.Time // guarded by mu: when faults were set
	put    int64     // guarded by mu: bytes put since then
	change chan struct{}
	syncs  atomic.Int64
	reads  atomic.Int64
	puts   atomic.Int64
}

// Reads returns how many chunk reads (Get, GetRange) reached the store.
func (f *Faulty) Reads() int64 { return f.reads.Load() }

// Puts returns how many Put calls reached the store.
func (f *Faulty) Puts() int64 { return f.puts.Load() }

// NewFaulty wraps s.
func NewFaulty(s Store) *Faulty { return &Faulty{Store: s, change: make(chan struct{})} }

// Syncs returns how many times Sync was called: tests use it to check
// when the pool forces data to disk.
func (f *Faulty) Syncs() int64 { return f.syncs.Load() }

// Set replaces the injected faults, releasing calls hung by the old ones.
func (f *Faulty) Set(x Faults) {
	f.mu.Lock()
	f.faults, f.since, f.put = x, time.Now(), 0
	close(f.change)
	f.change = make(chan struct{})
	f.mu.Unlock()
}

// get returns the faults for a call, after the delay or hang they ask for.
func (f *Faulty) get() Faults {
	for {
		f.mu.Lock()
		x, since, change := f.faults, f.since, f.change
		f.mu.Unlock()
		if x.Hang {
			<-change
			continue
		}
		if x.Latency > 0 {
			time.Sleep(x.Latency)
		}
		if x.Flap > 0 && (time.Since(since)/x.Flap)%2 == 1 {
			err := fmt.Errorf("flapping drive: %w", syscall.EIO)
			x.ReadErr, x.WriteErr = err, err
		}
		return x
	}
}

// Put implements Store.
func (f *Faulty) Put(id ChunkID, data []byte) error {
	f.puts.Add(1)
	x := f.get()
	if x.WriteErr != nil {
		return x.WriteErr
	}
	if x.Capacity > 0 {
		f.mu.Lock()
		full := f.put+int64(len(data)) > x.Capacity
		if !full {
			f.put += int64(len(data))
		}
		f.mu.Unlock()
		if full {
			return fmt.Errorf("put chunk %s: %w", id.Short(), syscall.ENOSPC)
		}
	}
	return f.Store.Put(id, data)
}

// Get implements Store.
func (f *Faulty) Get(id ChunkID, buf []byte) ([]byte, error) {
	return f.read(func() ([]byte, error) { return f.Store.Get(id, buf) })
}

// GetRange implements Store.
func (f *Faulty) GetRange(id ChunkID, off, n int, buf []byte) ([]byte, error) {
	return f.read(func() ([]byte, error) { return f.Store.GetRange(id, off, n, buf) })
}

func (f *Faulty) read(get func() ([]byte, error)) ([]byte, error) {
	f.reads.Add(1)
	x := f.get()
	if x.ReadErr != nil {
		return nil, x.ReadErr
	}
	b, err := get()
	if err == nil && x.Corrupt && len(b) > 0 {
		bit := f.reads.Load() * 7919 % int64(len(b)*8)
		b[bit/8] ^= 1 << (bit % 8)
	}
	return b, err
}

// Has implements Store.
func (f *Faulty) Has(id ChunkID) (bool, error) {
	if x := f.get(); x.ReadErr != nil {
		return false, x.ReadErr
	}
	return f.Store.Has(id)
}

// Delete implements Store.
func (f *Faulty) Delete(id ChunkID) error {
	if x := f.get(); x.WriteErr != nil {
		return x.WriteErr
	}
	return f.Store.Delete(id)
}

// Sync implements Store.
func (f *Faulty) Sync() error {
	f.syncs.Add(1)
	if x := f.get(); x.WriteErr != nil {
		return x.WriteErr
	}
	return f.Store.Sync()
}

// CollectGarbage passes through to the wrapped store.
func (f *Faulty) CollectGarbage() error {
	if gc, ok := f.Store.(GarbageCollector); ok {
		return gc.CollectGarbage()
	}
	return nil
}
