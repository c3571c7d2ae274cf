package nodes

import (
	"sync"
	"sync/atomic"
	"time"
)

// Faults are the misbehaviours a Faulty store injects.
type Faults struct {
	// ReadErr, if set, is returned by Get and Has.
	ReadErr error
	// WriteErr, if set, is returned by Put, Delete and Sync.
	WriteErr error
	// Corrupt flips a byte of every chunk Get returns.
	Corrupt bool
	// Latency delays every call.
	Latency time.Duration
}

// Faulty wraps a Store and injects the faults set with Set. It is for tests
// and for fault-injection runs; with no faults set it passes calls through.
type Faulty struct {
	Store
	mu     sync.Mutex
	faults Faults // guarded by mu
	syncs  atomic.Int64
}

// Syncs returns how many times Sync was called: tests use it to check
// when the pool forces data to disk.
func (f *Faulty) Syncs() int64 { return f.syncs.Load() }

// NewFaulty wraps s.
func NewFaulty(s Store) *Faulty { return &Faulty{Store: s} }

// Set replaces the injected faults.
func (f *Faulty) Set(x Faults) {
	f.mu.Lock()
	f.faults = x
	f.mu.Unlock()
}

func (f *Faulty) get() Faults {
	f.mu.Lock()
	x := f.faults
	f.mu.Unlock()
	if x.Latency > 0 {
		time.Sleep(x.Latency)
	}
	return x
}

// Put implements Store.
func (f *Faulty) Put(id ChunkID, data []byte) error {
	if x := f.get(); x.WriteErr != nil {
		return x.WriteErr
	}
	return f.Store.Put(id, data)
}

// Get implements Store.
func (f *Faulty) Get(id ChunkID, buf []byte) ([]byte, error) {
	x := f.get()
	if x.ReadErr != nil {
		return nil, x.ReadErr
	}
	b, err := f.Store.Get(id, buf)
	if err == nil && x.Corrupt && len(b) > 0 {
		b[len(b)/2] ^= 0x5a
	}
	return b, err
}

// GetRange implements Store.
func (f *Faulty) GetRange(id ChunkID, off, n int, buf []byte) ([]byte, error) {
	x := f.get()
	if x.ReadErr != nil {
		return nil, x.ReadErr
	}
	b, err := f.Store.GetRange(id, off, n, buf)
	if err == nil && x.Corrupt && len(b) > 0 {
		b[len(b)/2] ^= 0x5a
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
