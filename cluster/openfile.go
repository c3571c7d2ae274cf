package cluster

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/dhdfs/dhdfs/nodes"
)

// Limits of the write-back state of one open file. A file's unflushed data
// is at most maxDirtyChunks + maxStagingChunks chunks, whatever is written.
const (
	maxDirtyChunks   = 8
	maxStagingChunks = 4
)

// File is the shared state of an open regular file: every handle on the
// inode uses the same File, so handles see each other's writes at once and
// the size reported by GetAttr includes data not yet flushed.
//
// Writes land in per-chunk buffers. A buffer is staged (hashed and
// replicated) in the background once full, or when too many are dirty;
// staged chunks are committed to the file's metadata every commitEvery
// chunks and at Flush. A durable commit syncs their drives first; a lazy
// one leaves that to the pool's next Sync (see Options.SyncInterval).
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
	dirty    map[int64]*chunkBuf // guarded by mu: chunk index → content being written
	staging  map[int64]*chunkBuf // guarded by mu: buffers being replicated
	pending  map[int64]ChunkRef  // guarded by mu: replicated, not yet committed
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
		dirty: map[int64]*chunkBuf{}, staging: map[int64]*chunkBuf{}, pending: map[int64]ChunkRef{}, touched: map[uint32]bool{}}
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
	// Buffered chunks may replace stored ones: until they are committed,
	// the stored bytes are an estimate that errs high, as ext4's
	// delayed allocation does.
	if n.Stored >= 0 {
		extra := int64(0)
		for _, b := range f.dirty {
			extra += int64(b.Len())
		}
		for _, b := range f.staging {
			extra += int64(b.Len())
		}
		for _, r := range f.pending {
			extra += int64(r.Size)
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
		buf, err := f.dirtyBuf(ctx, idx, in, len(p)-done)
		if err != nil {
			return done, err
		}
		c := buf.WriteAt(p[done:], in)
		f.dirty[idx] = buf
		done += c
		if int64(buf.Len()) == f.cs && int64(in+c) == f.cs {
			f.stage(ctx, idx)
		}
	}
	f.size = max(f.size, off+int64(len(p)))
	f.mtime, f.modified = now(), true
	// Too much dirty data (random writes): stage the lowest chunks.
	for len(f.dirty) > maxDirtyChunks {
		f.stage(ctx, slices.Min(mapKeys(f.dirty)))
	}
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

// dirtyBuf returns the write buffer of chunk idx for a write of n bytes at
// in, loading the chunk's current content unless the write covers all of
// it. f.mu is held; it may be released while waiting.
func (f *File) dirtyBuf(ctx context.Context, idx int64, in, n int) (*chunkBuf, error) {
	var buf *chunkBuf
	for {
		if b, ok := f.dirty[idx]; ok { // possibly made by another writer while we waited
			if buf != nil {
				f.m.freeBuf(buf, true)
			}
			return b, nil
		}
		if f.staging[idx] != nil {
			f.cond.Wait()
			continue
		}
		if buf != nil {
			break
		}
		buf = f.newBuf(ctx) // may release f.mu: look again
	}
	// The bytes of the chunk that lie inside the file must be kept; past
	// them the buffer reads as zeros by construction.
	keep := min(max(f.size-idx*f.cs, 0), f.cs)
	if keep > 0 && (in > 0 || int64(in+n) < keep) {
		old, err := f.current(ctx, idx)
		if err != nil {
			f.m.freeBuf(buf, true)
			return nil, err
		}
		buf.WriteAt(old[:min(int64(len(old)), keep)], 0)
	}
	return buf, nil
}

// current returns the stored content of chunk idx (staged or committed),
// nil for a hole. f.mu is held.
func (f *File) current(ctx context.Context, idx int64) ([]byte, error) {
	if ref, ok := f.pending[idx]; ok {
		return f.m.cachedChunk(ctx, ref)
	}
	ref, ok, err := f.m.chunkAt(f.ino, idx)
	if err != nil || !ok {
		return nil, err
	}
	return f.m.cachedChunk(ctx, ref)
}

// stage starts replicating the dirty chunk idx in the background, waiting
// first if too many chunks of this file are already being replicated.
// f.mu is held.
func (f *File) stage(ctx context.Context, idx int64) {
	for len(f.staging) >= maxStagingChunks {
		f.cond.Wait()
	}
	buf, ok := f.dirty[idx]
	if !ok {
		return
	}
	delete(f.dirty, idx)
	f.staging[idx] = buf
	want := f.want // read under f.mu
	go func() {
		st, err := f.m.stageChunk(context.WithoutCancel(ctx), buf.Bytes(), want)
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.staging, idx)
		f.m.freeBuf(buf, !st.Escaped)
		if err != nil {
			if f.err == nil {
				f.err = err
			}
		} else {
			if old, ok := f.pending[idx]; ok {
				f.m.releaseLater(old.ID)
			}
			f.pending[idx] = st.Ref
			for _, t := range st.Touched {
				f.touched[t] = true
			}
		}
		f.cond.Broadcast()
	}()
}

// drain stages every dirty chunk and waits for all staging. f.mu is held.
func (f *File) drain(ctx context.Context) error {
	for _, idx := range mapKeys(f.dirty) {
		f.stage(ctx, idx)
	}
	for len(f.staging) > 0 {
		f.cond.Wait()
	}
	return f.takeErr()
}

// commit points the file at the staged chunks. A durable commit first
// syncs the drives written since the last commit, so that the metadata
// never names a copy that is not on disk; a lazy one leaves them to the
// next pool Sync. f.mu is held.
func (f *File) commit(durable bool) error {
	if len(f.pending) == 0 && !f.modified {
		return nil
	}
	nums := make([]uint32, 0, len(f.touched))
	for t := range f.touched {
		nums = append(nums, t)
	}
	if durable {
		if err := f.m.syncDrives(nums); err != nil {
			return err
		}
	} else {
		f.m.markUnsynced(nums)
	}
	slots := make([]slot, 0, len(f.pending))
	for idx, ref := range f.pending {
		slots = append(slots, slot{Idx: idx, Ref: ref})
	}
	// The size may cover chunks still in buffers: after a crash those read
	// as they were before the unsynced writes, which POSIX allows.
	if err := f.m.commitSlots(f.ino, slots, f.size, f.modified); err != nil {
		return err
	}
	f.pending, f.touched = map[int64]ChunkRef{}, map[uint32]bool{}
	if len(f.dirty)+len(f.staging) == 0 {
		f.modified = false
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
	if err := f.flushLocked(ctx, true); err != nil {
		return err
	}
	if f.m.pendingSync() {
		return f.m.Sync()
	}
	return nil
}

// flushLocked stages and commits every write; durable syncs them too when
// there were any. f.mu is held.
func (f *File) flushLocked(ctx context.Context, durable bool) error {
	if err := f.drain(ctx); err != nil {
		return err
	}
	changed := len(f.pending) > 0 || f.modified
	if err := f.commit(durable); err != nil {
		return err
	}
	if durable && changed {
		return f.m.Sync()
	}
	return nil
}

// nearRead is how far from the end of the previous read a read may start
// and still continue a sequential run: the kernel's read-ahead requests
// arrive up to a few of its windows out of order. Windows are 128 KiB by
// default; with a larger read-ahead they are up to 1 MiB, so a read may
// also be two of its own lengths away.
const nearRead = 512 << 10

// ReadAt reads into p from off, like io.ReaderAt.
func (f *File) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	_, n, err := f.read(ctx, p, off, false)
	return n, err
}

// ReadShared reads len(p) bytes from off, like ReadAt, but returns them
// as a list of slices, some of which may be shared with the chunk cache
// rather than copied into p: the caller must not modify them. At the end
// of the file it returns what there is and io.EOF.
func (f *File) ReadShared(ctx context.Context, p []byte, off int64) ([][]byte, int, error) {
	vec, n, err := f.read(ctx, p, off, true)
	if vec == nil && n > 0 { // buffered writes: copied into p
		vec = [][]byte{p[:n]}
	}
	return vec, n, err
}

func (f *File) read(ctx context.Context, p []byte, off int64, share bool) ([][]byte, int, error) {
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
	vec, n, err := f.m.readSpans(p, off, size, func(idx int64, in, span int) ([]byte, int, error) {
		if !clean {
			if b, ok := f.dirty[idx]; ok {
				return b.Bytes(), 0, nil
			}
			if b, ok := f.staging[idx]; ok {
				return b.Bytes(), 0, nil
			}
			b, err := f.current(ctx, idx)
			return b, 0, err
		}
		return f.m.committedChunk(ctx, f.ino, idx, in, span, sequential)
	}, share)
	if sequential && clean && off+int64(n) < size {
		f.m.readAhead(f.ino, (off+int64(n))/f.cs+1)
	}
	return vec, n, err
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
		return f.m.meta.sync()
	}
	return nil
}

// releaseLater drops a staged reference that a newer write superseded,
// in the background (the caller holds a file's lock); Close waits for it.
func (m *Manager) releaseLater(id nodes.ChunkID) {
	m.releases.Add(1)
	go func() {
		defer m.releases.Done()
		if err := m.releaseChunks([]nodes.ChunkID{id}); err != nil {
			m.log.Warn("release superseded chunk", "chunk", id.Short(), "err", err)
		}
	}()
}
