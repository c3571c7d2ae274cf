package cluster

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// maxStagingChunks bounds how many chunks of one file are stored in
// parallel. How much a file buffers is bounded by the pool (Options.
// WriteBufferBytes), as a page cache is, not per file: a random writer's
// working set up to that bound is absorbed and leaves as small layers.
const maxStagingChunks = 4

// File is the shared state of an open regular file: every handle on the
// inode uses the same File, so handles see each other's writes at once and
// the size reported by GetAttr includes data not yet flushed.
//
// Writes land in per-slot buffers that keep only the bytes written. A
// buffer is staged (stored as a chunk holding just those bytes, and
// layered over the slot) in the background once it holds a whole chunk,
// when the pool's write buffers run short, and at Flush; staged layers are
// committed to the file's metadata every commitEvery slots and at Flush.
// Fsync adds one sync round, shared with concurrent fsyncs (sync.go).
type File struct {
	m   *Manager
	ino Ino
	cs  int64

	handles int // guarded by Manager.filesMu

	mu       sync.Mutex
	cond     *sync.Cond          // broadcast when a staging finishes; uses mu
	size     int64               // guarded by mu: logical size, unflushed writes included
	mtime    int64               // guarded by mu: time of the last unflushed write
	modified bool                // guarded by mu: written since the last commit
	dirty    map[int64]*chunkBuf // guarded by mu: slot index → bytes written, not yet staged
	staging  map[int64]*chunkBuf // guarded by mu: buffers being stored, one per slot at most
	pending  map[int64]layers    // guarded by mu: layers stored, not yet committed, oldest first
	touched  map[uint32]bool     // guarded by mu: drives written since the last commit
	err      error               // guarded by mu: a background failure, reported once
	lastRead int64               // guarded by mu: end of the last read, to spot sequential reads
	streak   int                 // guarded by mu: reads in a row near the one before
	want     int                 // guarded by mu: replication factor of new chunks
}

// OpenFile returns the shared File of the regular file ino, registering a
// handle; every OpenFile must be matched by a Close.
func (m *Manager) OpenFile(ino Ino) (*File, error) {
	m.filesMu.Lock()
	defer m.filesMu.Unlock()
	if f, ok := m.files[ino]; ok {
		f.handles++
		return f, nil
	}
	n, err := m.inode(ino)
	if err != nil {
		return nil, err
	}
	if !n.IsRegular() {
		return nil, fmt.Errorf("open inode %d: %w", ino, ErrIsDir)
	}
	f := &File{m: m, ino: ino, cs: int64(m.cfg.ChunkSize), want: m.wantFor(&n), handles: 1, size: n.Size,
		dirty: map[int64]*chunkBuf{}, staging: map[int64]*chunkBuf{}, pending: map[int64]layers{}, touched: map[uint32]bool{}}
	f.cond = sync.NewCond(&f.mu)
	m.files[ino] = f
	return f, nil
}

// openFile returns the File of ino if a handle has it open.
func (m *Manager) openFile(ino Ino) *File {
	m.filesMu.Lock()
	defer m.filesMu.Unlock()
	return m.files[ino]
}

// Close releases one handle. The last one flushes the file, and frees it if
// it was unlinked meanwhile.
func (f *File) Close(ctx context.Context) error {
	m := f.m
	m.filesMu.Lock()
	f.handles--
	last := f.handles == 0
	m.filesMu.Unlock()
	if !last {
		return nil
	}
	err := f.Flush(ctx)
	m.filesMu.Lock()
	if f.handles == 0 && m.files[f.ino] == f {
		delete(m.files, f.ino)
	} else {
		last = false // reopened while flushing
	}
	m.filesMu.Unlock()
	if last {
		if ferr := m.maybeFree(f.ino); err == nil {
			err = ferr
		}
	}
	return err
}

// newBuf returns an empty chunk buffer, counted against the pool-wide
// limit on write buffers. When the limit is reached the caller's own dirty
// chunks are staged first; if other files still hold every buffer after
// bufWait, the buffer is allocated anyway rather than risk waiting forever
// on idle files, so the limit is soft. f.mu is held.
func (f *File) newBuf(ctx context.Context) *chunkBuf {
	select {
	case f.m.bufTokens <- struct{}{}:
	default:
		for _, idx := range mapKeys(f.dirty) {
			f.stage(ctx, idx)
		}
		f.mu.Unlock()
		select {
		case f.m.bufTokens <- struct{}{}:
		case <-time.After(bufWait):
			f.m.bufOverdraft.Add(1)
		}
		f.mu.Lock()
	}
	return getChunkBuf(f.cs)
}

// freeBuf returns a buffer from newBuf; its storage is recycled unless a
// drive call may still be reading it (recycle false).
func (m *Manager) freeBuf(b *chunkBuf, recycle bool) {
	if recycle {
		putChunkBuf(b, m.opts.PoisonBuffers)
	}
	for o := m.bufOverdraft.Load(); o > 0; o = m.bufOverdraft.Load() {
		if m.bufOverdraft.CompareAndSwap(o, o-1) {
			return
		}
	}
	select {
	case <-m.bufTokens:
	default:
	}
}

// bufWait is how long a writer waits for a write buffer held by other files.
const bufWait = time.Second

// setWant changes the replication factor for chunks written from now on.
func (f *File) setWant(r int) {
	f.mu.Lock()
	f.want = r
	f.mu.Unlock()
}

// Size returns the file's logical size, unflushed writes included.
func (f *File) Size() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.size
}

// overlay applies unflushed changes to attributes read from the metadata.
func (f *File) overlay(n *Inode) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n.Size = f.size
	if f.modified {
		n.Mtime, n.Ctime = f.mtime, f.mtime
	}
	// Buffered writes may overwrite stored bytes: until they are
	// committed, the stored bytes are an estimate that errs high, as
	// ext4's delayed allocation does.
	if n.Stored >= 0 {
		extra := int64(0)
		for _, b := range f.dirty {
			extra += int64(b.Written())
		}
		for _, b := range f.staging {
			extra += int64(b.Written())
		}
		for _, ls := range f.pending {
			extra += ls.storedBytes()
		}
		n.Stored = max(n.Stored, min(n.Stored+extra, n.Size))
	}
}

// WriteAt writes p at off, growing the file as needed.
func (f *File) WriteAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, ErrInvalid
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.takeErr(); err != nil {
		return 0, err
	}
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		idx, in := pos/f.cs, int(pos%f.cs)
		buf := f.dirtyBuf(ctx, idx)
		c := buf.WriteAt(p[done:], in)
		done += c
		if buf.Whole() && int64(buf.Len()) == f.cs {
			f.stage(ctx, idx)
		}
	}
	f.size = max(f.size, off+int64(len(p)))
	f.mtime, f.modified = now(), true
	if len(f.pending) >= commitEvery {
		if err := f.commit(f.m.durableClose()); err != nil {
			return done, err
		}
	}
	return done, nil
}

func mapKeys[V any](m map[int64]V) []int64 {
	keys := make([]int64, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

func (f *File) takeErr() error {
	err := f.err
	f.err = nil
	return err
}

// dirtyBuf returns the write buffer of slot idx, making one if there is
// none. f.mu is held; it may be released while waiting for a buffer.
func (f *File) dirtyBuf(ctx context.Context, idx int64) *chunkBuf {
	var buf *chunkBuf
	for {
		if b, ok := f.dirty[idx]; ok { // possibly made by another writer while we waited
			if buf != nil {
				f.m.freeBuf(buf, true)
			}
			return b
		}
		if buf != nil {
			f.dirty[idx] = buf
			return buf
		}
		buf = f.newBuf(ctx) // may release f.mu: look again
	}
}

// below returns the layers under a new layer of slot idx: committed and
// staged ones. f.mu is held.
func (f *File) below(idx int64) (layers, error) {
	ls, err := f.m.slotAt(f.ino, idx)
	if err != nil {
		return nil, err
	}
	return append(ls, f.pending[idx]...), nil
}

// stage starts storing the buffer of slot idx in the background, as a
// layer over the slot (see planStage for what is stored). Only one
// buffer of a slot is staged at a time, so layers pile up in the order
// they were written, and at most maxStagingChunks of the file. f.mu is
// held.
func (f *File) stage(ctx context.Context, idx int64) {
	if run := f.startStaging(ctx, idx, false); run != nil {
		go run()
	}
}

// startStaging takes slot idx's buffer for staging and returns the work
// that stores it, to run without f.mu held, or nil if the slot has no
// buffer. hold: a sync round follows the commit at once, so small new
// chunks may be held in memory for it (held.go). f.mu is held.
func (f *File) startStaging(ctx context.Context, idx int64, hold bool) func() {
	for f.staging[idx] != nil || len(f.staging) >= maxStagingChunks {
		f.cond.Wait()
	}
	buf, ok := f.dirty[idx]
	if !ok {
		return nil
	}
	delete(f.dirty, idx)
	f.staging[idx] = buf
	want := f.want // read under f.mu
	below, err := f.below(idx)
	if err != nil {
		f.failStaging(idx, buf, err)
		return nil
	}
	plan := planStage(below, buf.ranges, buf.Written())
	return func() {
		ctx := context.WithoutCancel(ctx)
		var data []byte
		var pieces []piece
		var err error
		if plan.fold {
			data, err = f.m.mergeRegion(ctx, below, buf, plan.lo, plan.hi)
			pieces = []piece{{At: plan.lo, Len: len(data)}}
		} else {
			data, pieces = buf.Pack()
		}
		var st staged
		if err == nil {
			st, err = f.m.storeChunk(ctx, data, want, len(pieces), hold)
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.staging, idx)
		f.m.freeBuf(buf, !st.Escaped)
		if err != nil {
			if f.err == nil {
				f.err = err
			}
		} else {
			for i := range pieces {
				pieces[i].Ref = st.Ref
			}
			f.pending[idx] = append(f.pending[idx], pieces...)
			for _, t := range st.Touched {
				f.touched[t] = true
			}
		}
		f.cond.Broadcast()
	}
}

// failStaging ends a staging that could not start. f.mu is held.
func (f *File) failStaging(idx int64, buf *chunkBuf, err error) {
	delete(f.staging, idx)
	f.m.freeBuf(buf, true)
	if f.err == nil {
		f.err = err
	}
	f.cond.Broadcast()
}

// drain stages every dirty chunk and waits for all staging; hold is
// startStaging's. f.mu is held.
func (f *File) drain(ctx context.Context, hold bool) error {
	// The last buffer is stored on this goroutine: a small synchronous
	// write (one buffer) then waits for no hand-off.
	idxs := mapKeys(f.dirty)
	for i, idx := range idxs {
		run := f.startStaging(ctx, idx, hold)
		switch {
		case run == nil:
		case i < len(idxs)-1:
			go run()
		default:
			f.mu.Unlock()
			run()
			f.mu.Lock()
		}
	}
	for len(f.staging) > 0 {
		f.cond.Wait()
	}
	return f.takeErr()
}

// commit puts the staged layers on the file's slots in the metadata,
// without waiting for disks: the next sync round makes them durable
// (durable: this one runs it now). f.mu is held.
func (f *File) commit(durable bool) error {
	if len(f.pending) == 0 && !f.modified {
		return nil
	}
	nums := make([]uint32, 0, len(f.touched))
	for t := range f.touched {
		nums = append(nums, t)
	}
	adds := make([]slot, 0, len(f.pending))
	for idx, ls := range f.pending {
		adds = append(adds, slot{Idx: idx, Layers: ls})
	}
	// The size may cover slots still in buffers: after a crash those read
	// as they were before the unsynced writes, which POSIX allows.
	if err := f.m.commitLayers(f.ino, adds, f.size, f.modified, false, nums); err != nil {
		return err
	}
	f.pending, f.touched = map[int64]layers{}, map[uint32]bool{}
	if len(f.dirty)+len(f.staging) == 0 {
		f.modified = false
	}
	if durable {
		return f.m.Sync()
	}
	return nil
}

// Flush commits every write so far, as at close(2): other processes and a
// restarted pool see it. It is durable, synced to the disks, when the pool
// syncs at every close (Options.SyncInterval zero); otherwise at the next
// Sync.
func (f *File) Flush(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.flushLocked(ctx, f.m.durableClose())
}

// Fsync makes every write so far durable, as fsync(2): the data synced on
// its drives and the metadata committed and synced, including earlier lazy
// commits of the file and the creation of its name.
func (f *File) Fsync(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.drain(ctx, true); err != nil {
		return err
	}
	// A round even when this file has nothing new: its earlier lazy
	// commits, and the creation of its name, become durable too.
	if err := f.commit(false); err != nil {
		return err
	}
	return f.m.Sync()
}

// flushLocked stages and commits every write; durable syncs them too when
// there were any. f.mu is held.
func (f *File) flushLocked(ctx context.Context, durable bool) error {
	if err := f.drain(ctx, durable); err != nil {
		return err
	}
	return f.commit(durable)
}

// nearRead is how far from the end of the previous read a read may start
// and still continue a sequential run: the kernel's read-ahead requests
// arrive up to a few of its windows out of order. Windows are 128 KiB by
// default; with a larger read-ahead they are up to 1 MiB, so a read may
// also be two of its own lengths away.
const nearRead = 512 << 10

// ReadAt reads into p from off, like io.ReaderAt.
func (f *File) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	_, n, used, err := f.read(ctx, p, off, false)
	used.unpin() // none: nothing is shared
	return n, err
}

// ReadShared reads len(p) bytes from off, like ReadAt, but returns them
// as a list of slices, some of which may be shared with the chunk cache
// rather than copied into p: the caller must not modify them, and calls
// done once it no longer uses them (the cache recycles their buffers
// then), also after an error. At the end of the file it returns what
// there is and io.EOF.
func (f *File) ReadShared(ctx context.Context, p []byte, off int64) (vec [][]byte, n int, done func(), err error) {
	vec, n, used, err := f.read(ctx, p, off, true)
	if vec == nil && n > 0 { // buffered writes: copied into p
		vec = [][]byte{p[:n]}
	}
	if len(used) == 0 {
		return vec, n, func() {}, err
	}
	var once sync.Once
	return vec, n, func() { once.Do(used.unpin) }, err
}

func (f *File) read(ctx context.Context, p []byte, off int64, share bool) ([][]byte, int, pins, error) {
	f.mu.Lock()
	size := f.size
	// The kernel splits a sequential read into requests of its read-ahead
	// window that arrive in parallel and out of order: a run of requests
	// each near the one before counts as sequential. One near request is
	// not enough: random reads land near the last one now and then, and
	// would each fetch whole chunks ahead.
	near := max(nearRead, 2*int64(len(p)))
	if off >= f.lastRead-near && off <= f.lastRead+near {
		f.streak++
	} else {
		f.streak = 0
	}
	sequential := f.streak >= 2
	f.lastRead = off + int64(len(p))
	clean := len(f.dirty)+len(f.staging)+len(f.pending) == 0
	if !clean {
		// Buffered writes change under f.mu: copy them, never share.
		defer f.mu.Unlock()
		share = false
	} else {
		f.mu.Unlock() // committed data only: read without blocking writers
	}
	vec, n, used, err := f.m.readSpans(p, off, size, func(idx int64, in, span int) ([]byte, int, *cacheEntry, error) {
		if !clean {
			return f.buffered(ctx, idx, in, span)
		}
		return f.m.committedChunk(ctx, f.ino, idx, in, span, sequential)
	}, share)
	if sequential && clean && off+int64(n) < size {
		f.m.readAhead(f.ino, (off+int64(n))/f.cs+1)
	}
	return vec, n, used, err
}

// buffered returns bytes [in, in+span) of slot idx as this file sees them:
// the layers below with the staging and written buffers over them. f.mu
// is held.
func (f *File) buffered(ctx context.Context, idx int64, in, span int) ([]byte, int, *cacheEntry, error) {
	ls, err := f.below(idx)
	if err != nil {
		return nil, 0, nil, err
	}
	b, base, pin, err := f.m.slotBytes(ctx, ls, in, span, false)
	st, dt := f.staging[idx], f.dirty[idx]
	if err != nil || (st == nil && dt == nil) {
		return b, base, pin, err
	}
	out := make([]byte, span)
	if rel := in - base; rel >= 0 && rel < len(b) {
		copy(out, b[rel:])
	}
	pin.unpin()
	for _, buf := range []*chunkBuf{st, dt} {
		if buf != nil {
			buf.Overlay(out, in)
		}
	}
	return out, in, nil, nil
}

// Truncate sets the file's size. Unflushed writes are committed first.
func (f *File) Truncate(ctx context.Context, size int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	durable := f.m.durableClose()
	if err := f.flushLocked(ctx, durable); err != nil {
		return err
	}
	if err := f.m.truncate(ctx, f.ino, size); err != nil {
		return err
	}
	f.size = size
	if durable {
		return f.m.Sync()
	}
	return nil
}
