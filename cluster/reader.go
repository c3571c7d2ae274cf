package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/dhdfs/dhdfs/nodes"
)

// ReadAt reads len(p) bytes of ino at off into p, like io.ReaderAt: at the
// end of the file it returns the bytes read and io.EOF. Writes still
// buffered in an open File are seen.
func (m *Manager) ReadAt(ctx context.Context, ino Ino, p []byte, off int64) (int, error) {
	if f := m.openFile(ino); f != nil {
		return f.ReadAt(ctx, p, off)
	}
	n, err := m.GetAttr(ino)
	if err != nil {
		return 0, err
	}
	return m.readRange(p, off, n.Size, func(idx int64, in, span int) ([]byte, int, *cacheEntry, error) {
		return m.committedChunk(ctx, ino, idx, in, span, false)
	})
}

// committedChunk returns bytes of slot idx of ino covering [in, in+span)
// and the slot offset of the first byte returned (see slotBytes).
func (m *Manager) committedChunk(ctx context.Context, ino Ino, idx int64, in, span int, sequential bool) ([]byte, int, *cacheEntry, error) {
	ls, err := m.slotAt(ino, idx)
	if err != nil {
		return nil, 0, nil, err
	}
	return m.slotBytes(ctx, ls, in, span, sequential)
}

// slotBytes returns bytes of a slot with layers ls covering [in, in+n)
// and the slot offset of the first byte returned; bytes past what it
// returns read as zeros, and nil means zeros only. When one stored piece
// shows the start of the span and nothing after it does, the bytes are
// its chunk's own (shared, not to be modified; see chunkBytes), cut where
// the piece ends, and pinned when they are cached: the caller unpins the
// entry returned once done with them. Otherwise the pieces' bytes are
// copied into a new buffer.
func (m *Manager) slotBytes(ctx context.Context, ls layers, in, n int, sequential bool) ([]byte, int, *cacheEntry, error) {
	type shown struct {
		i int
		s span
	}
	var parts []shown
	ls.visible(in, in+n, func(i int, s span) {
		if ls[i].stored() {
			parts = append(parts, shown{i, s})
		}
	})
	if len(parts) == 0 {
		return nil, in, nil, nil
	}
	if len(parts) == 1 && parts[0].s.lo == in {
		p, s := ls[parts[0].i], parts[0].s
		off := p.Off + in - p.At // chunk offset of slot offset in
		data, base, pin, err := m.chunkBytes(ctx, p.Ref, off, s.hi-in, sequential)
		if err != nil {
			return nil, 0, nil, err
		}
		// Never past the piece: the chunk may hold more than it shows.
		if end := off + s.hi - in - base; end >= 0 && end < len(data) {
			data = data[:end]
		}
		return data, p.At - p.Off + base, pin, nil
	}
	out := make([]byte, n)
	for _, part := range parts {
		p, s := ls[part.i], part.s
		off := p.Off + s.lo - p.At
		data, base, pin, err := m.chunkBytes(ctx, p.Ref, off, s.hi-s.lo, sequential)
		if err != nil {
			return nil, 0, nil, err
		}
		if rel := off - base; rel >= 0 && rel < len(data) {
			copy(out[s.lo-in:s.hi-in], data[rel:])
		}
		pin.unpin()
	}
	return out, in, nil, nil
}

// chunkBytes returns verified bytes of a stored chunk covering [off,
// off+n) and the chunk offset of the first byte returned: the whole chunk
// through the cache, pinned, when the read is sequential, the chunk is
// cached or the range is a large part of it, else the blocks around the
// range (a buffer of their own, no entry to unpin).
func (m *Manager) chunkBytes(ctx context.Context, ref ChunkRef, off, n int, sequential bool) ([]byte, int, *cacheEntry, error) {
	if sequential || m.cache.contains(ref.ID) || n*4 >= ref.Size {
		data, pin, err := m.cachedChunk(ctx, ref)
		return data, 0, pin, err
	}
	data, base, err := m.readBlocks(ctx, ref, off, n)
	return data, base, nil, err
}

// mergeRegion returns bytes [lo, hi) of a slot with layers ls and the
// buffer buf written over them: what a staging stores as one piece
// instead of the buffer's ranges.
func (m *Manager) mergeRegion(ctx context.Context, ls layers, buf *chunkBuf, lo, hi int) ([]byte, error) {
	out := make([]byte, hi-lo)
	data, base, pin, err := m.slotBytes(ctx, ls, lo, hi-lo, true)
	if err != nil {
		return nil, err
	}
	if rel := lo - base; rel >= 0 && rel < len(data) {
		copy(out, data[rel:]) // slotBytes starts at lo or before it
	}
	pin.unpin()
	buf.Overlay(out, lo)
	return out, nil
}

// readRange fills p from off of a file of the given size. chunk returns
// bytes of chunk idx covering [in, in+span) (nil for a hole) and the chunk
// offset of its first byte; bytes past what it returns read as zeros.
func (m *Manager) readRange(p []byte, off, size int64, chunk chunkFunc) (int, error) {
	_, n, _, err := m.readSpans(p, off, size, chunk, false)
	return n, err
}

// chunkFunc returns bytes of chunk idx covering [in, in+span) (nil for a
// hole), the chunk offset of its first byte, and the cache entry to unpin
// once done with them (nil if none).
type chunkFunc func(idx int64, in, span int) ([]byte, int, *cacheEntry, error)

// pins are cache entries whose bytes a reader still uses.
type pins []*cacheEntry

// unpin unpins them all.
func (ps pins) unpin() {
	for _, e := range ps {
		e.unpin()
	}
}

// readSpans reads like readRange. With share it also returns the bytes
// read as a list of slices, where a span that chunk returns whole is
// chunk's own slice, not copied into p: for immutable data (cached or
// freshly fetched chunks) that saves a copy per byte on the way to the
// kernel. Other spans are copied into p. Without share the list is nil
// and the bytes are p[:n]. The entries returned pin the shared spans'
// bytes: the caller unpins them once done with the list, also after an
// error.
func (m *Manager) readSpans(p []byte, off, size int64, chunk chunkFunc, share bool) ([][]byte, int, pins, error) {
	if off >= size {
		return nil, 0, nil, io.EOF
	}
	want := p
	if rest := size - off; int64(len(p)) > rest {
		want = p[:rest]
	}
	cs := int64(m.cfg.ChunkSize)
	var vec [][]byte
	var used pins
	done := 0
	for done < len(want) {
		pos := off + int64(done)
		idx, in := pos/cs, int(pos%cs)
		span := min(len(want)-done, int(cs)-in)
		data, base, pin, err := chunk(idx, in, span)
		if err != nil {
			return vec, done, used, fmt.Errorf("read inode at chunk %d: %w", idx, err)
		}
		rel := in - base
		if share && rel >= 0 && rel+span <= len(data) {
			vec = append(vec, data[rel:rel+span])
			if pin != nil {
				used = append(used, pin)
			}
		} else {
			copied := 0
			if rel >= 0 && rel < len(data) {
				copied = copy(want[done:done+span], data[rel:])
			}
			pin.unpin()
			clear(want[done+copied : done+span])
			if share {
				vec = append(vec, want[done:done+span])
			}
		}
		done += span
	}
	if len(want) < len(p) {
		return vec, done, used, io.EOF
	}
	return vec, done, used, nil
}

// cachedChunk returns a chunk through the chunk cache, pinned: the slice
// is shared, must not be modified, and is the caller's to use until it
// unpins the entry.
func (m *Manager) cachedChunk(ctx context.Context, ref ChunkRef) ([]byte, *cacheEntry, error) {
	return m.cache.get(ref.ID, func() ([]byte, bool, error) { return m.loadChunk(ctx, ref) })
}

// loadChunk reads a chunk for the cache: one at least half a chunk slot
// into a buffer from m.chunkBufs (pooled), which the cache gives back
// once nobody reads it; a smaller one into a buffer of its size, which
// would waste most of a pooled one.
func (m *Manager) loadChunk(ctx context.Context, ref ChunkRef) ([]byte, bool, error) {
	if ref.Size*2 <= m.cfg.ChunkSize {
		data, err := m.readChunk(ctx, ref, nil)
		return data, false, err
	}
	buf := m.getChunkBuf()
	data, err := m.readChunkWith(ctx, ref, func(s nodes.Store) ([]byte, error) {
		b, err := nodes.GetInto(s, ref.ID, buf)
		if errors.Is(err, nodes.ErrTimeout) {
			buf = m.getChunkBuf() // a late read may still fill the old one
		}
		return b, err
	})
	if err != nil {
		m.putChunkBuf(buf)
		return nil, false, err
	}
	// data is buf, or a buffer the store made when buf was short:
	// either is the cache's now.
	return data, cap(data) == m.cfg.ChunkSize, nil
}

// getChunkBuf returns an empty buffer of ChunkSize bytes.
func (m *Manager) getChunkBuf() []byte {
	if p, ok := m.chunkBufs.Get().(*[]byte); ok {
		return (*p)[:0]
	}
	return make([]byte, 0, m.cfg.ChunkSize)
}

// putChunkBuf recycles a buffer of ChunkSize bytes nobody uses any more.
func (m *Manager) putChunkBuf(b []byte) {
	if cap(b) == m.cfg.ChunkSize {
		m.chunkBufs.Put(&b)
	}
}

// readAheadChunks is how many chunks past the one being read a sequential
// reader fetches in the background: enough to keep a disk busy.
const readAheadChunks = 4

// readAhead fetches the chunks of slots idx to idx+readAheadChunks-1 of
// ino into the cache in the background, unless they are there already or
// enough fetches are running.
func (m *Manager) readAhead(ino Ino, idx int64) {
	for i := idx; i < idx+readAheadChunks; i++ {
		ls, err := m.slotAt(ino, i)
		if err != nil {
			continue
		}
		for _, ref := range ls.refs() {
			if m.cache.contains(ref.ID) {
				continue
			}
			select {
			case m.raSem <- struct{}{}:
			default:
				return
			}
			go func() {
				defer func() { <-m.raSem }()
				if _, pin, err := m.cachedChunk(context.Background(), ref); err == nil {
					pin.unpin()
				}
			}()
		}
	}
}

// chunkData returns the content of slot idx of ino (nil for a hole),
// appended to buf[:0] when it is one stored chunk. A read that races with
// a change of the same slot retries with the new layers rather than
// failing.
func (m *Manager) chunkData(ctx context.Context, ino Ino, idx int64, buf []byte) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		ls, err := m.slotAt(ino, idx)
		if err != nil || len(ls) == 0 {
			return buf[:0], err
		}
		var data []byte
		if ref, ok := ls.single(); ok {
			data, err = m.readChunk(ctx, ref, buf)
		} else {
			data, err = m.mergeRegion(ctx, ls, &chunkBuf{}, 0, ls.length())
		}
		if err == nil || attempt == 2 || !errors.Is(err, ErrUnavailable) {
			if err != nil {
				return nil, fmt.Errorf("read inode %d at chunk %d: %w", ino, idx, err)
			}
			return data, nil
		}
		if now, _ := m.slotAt(ino, idx); now.equal(ls) {
			return nil, fmt.Errorf("read inode %d at chunk %d: %w", ino, idx, err)
		}
	}
}

// readAhead is how many chunks WriteTo fetches ahead of the one it writes.
const readAhead = 4

// WriteTo streams the whole file ino to w, fetching up to readAhead chunks
// in parallel while writing them in order. Memory stays bounded by
// readAhead+1 chunks, whatever the file's size.
func (m *Manager) WriteTo(ctx context.Context, ino Ino, w io.Writer) (int64, error) {
	n, err := m.GetAttr(ino)
	if err != nil {
		return 0, err
	}
	if !n.IsRegular() {
		return 0, fmt.Errorf("inode %d: %w", ino, ErrIsDir)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cs := int64(m.cfg.ChunkSize)
	chunks := (n.Size + cs - 1) / cs
	type result struct {
		data []byte
		err  error
	}
	queue := make(chan chan result, readAhead)
	go func() {
		defer close(queue)
		for idx := int64(0); idx < chunks; idx++ {
			ch := make(chan result, 1)
			select {
			case queue <- ch:
			case <-ctx.Done():
				return
			}
			go func(idx int64) {
				data, err := m.chunkData(ctx, ino, idx, nil)
				ch <- result{data, err}
			}(idx)
		}
	}()
	var written int64
	zeros := make([]byte, 0)
	for ch := range queue {
		r := <-ch
		if r.err != nil {
			return written, r.err
		}
		length := min(cs, n.Size-written)
		data := r.data[:min(int64(len(r.data)), length)]
		k, err := w.Write(data)
		written += int64(k)
		if err != nil {
			return written, err
		}
		if pad := length - int64(len(data)); pad > 0 {
			if int64(len(zeros)) < pad {
				zeros = make([]byte, cs)
			}
			k, err := w.Write(zeros[:pad])
			written += int64(k)
			if err != nil {
				return written, err
			}
		}
	}
	return written, ctx.Err()
}
