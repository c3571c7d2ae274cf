package nodes

import (
	"errors"
	"fmt"
	"time"
)

// ErrTimeout means a drive did not answer within its time limit: a hung
// disk (a dying drive retrying a sector, a dead USB bridge), which must
// not hang the whole pool.
var ErrTimeout = errors.New("drive did not answer in time")

// WithTimeout wraps s so that each chunk operation gives up with
// ErrTimeout after limit. The call itself cannot be cancelled and goes on
// in the background; its late result is dropped (a late Put leaves an
// unrecorded copy, which the orphan sweep deletes). Whole-store operations
// (Iterate, Close, garbage collection) are not limited.
func WithTimeout(s Store, limit time.Duration) Store {
	return &timeoutStore{Store: s, limit: limit, jobs: make(chan func())}
}

type timeoutStore struct {
	Store
	limit time.Duration
	// jobs hands calls to idle workers. Workers outlive calls: with a new
	// goroutine per call the deadline cost 13% of random 4 KiB reads
	// through the mount, with long-lived workers about 5%.
	jobs chan func()
}

// workerIdle is how long a worker waits for another call before exiting.
const workerIdle = 10 * time.Second

func (t *timeoutStore) worker(job func()) {
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		job()
		idle.Reset(workerIdle)
		select {
		case job = <-t.jobs:
		case <-idle.C:
			return
		}
	}
}

// within runs op on a worker, giving up after t.limit.
func within[T any](t *timeoutStore, what string, op func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	job := func() {
		v, err := op()
		ch <- result{v, err}
	}
	select {
	case t.jobs <- job:
	default:
		go t.worker(job) // none idle: one more worker
	}
	timer := time.NewTimer(t.limit)
	defer timer.Stop()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-timer.C:
		var zero T
		return zero, fmt.Errorf("%s: %w (%v)", what, ErrTimeout, t.limit)
	}
}

func (t *timeoutStore) Put(id ChunkID, data []byte) error {
	_, err := within(t, "put chunk "+id.Short(), func() (struct{}, error) { return struct{}{}, t.Store.Put(id, data) })
	return err
}

// Get implements Store, reading into a buffer of its own (see readInto).
func (t *timeoutStore) Get(id ChunkID, buf []byte) ([]byte, error) {
	return t.readInto("get chunk "+id.Short(), buf, func(b []byte) ([]byte, error) { return t.Store.Get(id, b) })
}

// GetRange implements Store, reading into a buffer of its own as Get does.
func (t *timeoutStore) GetRange(id ChunkID, off, n int, buf []byte) ([]byte, error) {
	return t.readInto("get chunk "+id.Short(), buf, func(b []byte) ([]byte, error) { return t.Store.GetRange(id, off, n, b) })
}

// readInto runs read on a worker with a buffer of its own and copies the
// result to buf: after a timeout the caller may reuse buf while the late
// read would still be filling it. Those buffers are recycled unless the
// read timed out (a 64 KiB buffer made for every random read of a block
// was 15% of the mount's CPU). With buf nil the caller gets the read's
// own buffer.
func (t *timeoutStore) readInto(what string, buf []byte, read func([]byte) ([]byte, error)) ([]byte, error) {
	var scratch []byte
	if buf != nil {
		scratch = ReadBuf(cap(buf))
	}
	b, err := within(t, what, func() ([]byte, error) { return read(scratch) })
	if errors.Is(err, ErrTimeout) || buf == nil {
		return b, err // a late read may still fill scratch: not recycled
	}
	defer RecycleReadBuf(b)
	if err != nil {
		return nil, err
	}
	return append(buf[:0], b...), nil
}

// GetInto implements intoGetter: it reads into buf itself, which the
// caller gives up after a timeout.
func (t *timeoutStore) GetInto(id ChunkID, buf []byte) ([]byte, error) {
	return within(t, "get chunk "+id.Short(), func() ([]byte, error) { return GetInto(t.Store, id, buf) })
}

func (t *timeoutStore) Has(id ChunkID) (bool, error) {
	return within(t, "look up chunk "+id.Short(), func() (bool, error) { return t.Store.Has(id) })
}

func (t *timeoutStore) Delete(id ChunkID) error {
	_, err := within(t, "delete chunk "+id.Short(), func() (struct{}, error) { return struct{}{}, t.Store.Delete(id) })
	return err
}

func (t *timeoutStore) Sync() error {
	_, err := within(t, "sync", func() (struct{}, error) { return struct{}{}, t.Store.Sync() })
	return err
}

func (t *timeoutStore) Usage() (Usage, error) {
	return within(t, "usage", t.Store.Usage)
}

// CollectGarbage passes through to the wrapped store, without a limit.
func (t *timeoutStore) CollectGarbage() error {
	if gc, ok := t.Store.(GarbageCollector); ok {
		return gc.CollectGarbage()
	}
	return nil
}
