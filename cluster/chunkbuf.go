package cluster

import "sync"

// chunkBuf holds the bytes written to one chunk slot of an open file and
// not yet stored. Only the written ranges count: every other byte of the
// slot comes from the layers below (committed or staged earlier), and a
// staging stores just the written ranges, as a new layer, so a small
// write costs its own size rather than a chunk.
//
// Its storage is recycled between files (a deleted file's data may still
// sit in it), so no byte outside the written ranges may ever be read or
// stored: the methods below are the only code that touches data, readers
// get the written ranges only (Overlay, Pack), and as a second line of
// defence every gap a write leaves between written ranges is zeroed.
// Below the first range nothing is zeroed: an append that starts a buffer
// at 700 KiB into its slot would otherwise clear 700 KiB, per write.
type chunkBuf struct {
	data   []byte // written bytes at their slot offsets; [len, cap) is scratch
	ranges []span // written ranges, sorted, disjoint and not touching
	// lo is where the first range starts: every byte of data[lo:] is
	// written or zeroed.
	lo int
}

// Len returns the end of the last written range.
func (c *chunkBuf) Len() int { return len(c.data) }

// Written returns how many bytes the written ranges hold.
func (c *chunkBuf) Written() int {
	n := 0
	for _, r := range c.ranges {
		n += r.hi - r.lo
	}
	return n
}

// Whole reports whether the writes cover the slot from its start to their
// end without a gap: then they hide every layer below up to there.
func (c *chunkBuf) Whole() bool { return len(c.ranges) == 1 && c.ranges[0].lo == 0 }

// WriteAt copies p to offset off, as far as the buffer's capacity (the
// chunk size) allows, and returns the bytes copied.
func (c *chunkBuf) WriteAt(p []byte, off int) int {
	if off >= cap(c.data) || len(p) == 0 {
		return 0
	}
	end := min(off+len(p), cap(c.data))
	switch {
	case len(c.ranges) == 0:
		c.data, c.lo = c.data[:max(end, len(c.data))], off
	case off < c.lo:
		if end < c.lo {
			clear(c.data[end:c.lo])
		}
		c.lo = off
	}
	if end > len(c.data) {
		old := len(c.data)
		c.data = c.data[:end]
		if off > old {
			clear(c.data[old:off])
		}
	}
	n := copy(c.data[off:end], p)
	c.mark(span{off, off + n})
	return n
}

// mark adds s to the written ranges, merging what it overlaps or touches.
func (c *chunkBuf) mark(s span) {
	if s.lo >= s.hi {
		return
	}
	// The usual cases without allocating: a write at or after the end of
	// the last range (sequential writes, appends).
	if n := len(c.ranges); n == 0 || s.lo > c.ranges[n-1].hi {
		c.ranges = append(c.ranges, s)
		return
	} else if last := &c.ranges[n-1]; s.lo >= last.lo {
		last.hi = max(last.hi, s.hi)
		return
	}
	out := make([]span, 0, len(c.ranges)+1)
	placed := false
	for _, r := range c.ranges {
		switch {
		case r.hi < s.lo:
			out = append(out, r)
		case s.hi < r.lo:
			if !placed {
				out, placed = append(out, s), true
			}
			out = append(out, r)
		default:
			s = span{min(s.lo, r.lo), max(s.hi, r.hi)}
		}
	}
	if !placed {
		out = append(out, s)
	}
	c.ranges = out
}

// Overlay copies the written bytes that fall in [lo, lo+len(dst)) of the
// slot over dst, leaving dst's other bytes as they are.
func (c *chunkBuf) Overlay(dst []byte, lo int) {
	hi := lo + len(dst)
	for _, r := range c.ranges {
		a, b := max(r.lo, lo), min(r.hi, hi)
		if a < b {
			copy(dst[a-lo:b-lo], c.data[a:b])
		}
	}
}

// Pack returns the written bytes, the ranges one after another, and the
// layers that place them in the slot, for a chunk to be stored as it.
// The returned bytes may be the buffer's own (a single range from the
// slot's start): the caller reads them only while it holds the buffer.
func (c *chunkBuf) Pack() ([]byte, []piece) {
	if c.Whole() {
		return c.data, []piece{{At: 0, Len: len(c.data)}}
	}
	packed := make([]byte, 0, c.Written())
	pieces := make([]piece, 0, len(c.ranges))
	for _, r := range c.ranges {
		pieces = append(pieces, piece{Off: len(packed), At: r.lo, Len: r.hi - r.lo})
		packed = append(packed, c.data[r.lo:r.hi]...)
	}
	return packed, pieces
}

// bufPool recycles chunk buffers of every chunk size: a buffer of another
// capacity is dropped rather than reused.
var bufPool sync.Pool // of *chunkBuf

// getChunkBuf returns an empty buffer for a chunk of size cs.
func getChunkBuf(cs int64) *chunkBuf {
	if c, ok := bufPool.Get().(*chunkBuf); ok && int64(cap(c.data)) == cs {
		c.data, c.ranges, c.lo = c.data[:0], c.ranges[:0], 0
		return c
	}
	return &chunkBuf{data: make([]byte, 0, cs)}
}

// putChunkBuf recycles c; nothing may use it afterwards. With poison its
// whole storage is overwritten first, so that a read of bytes that were
// never written shows a recognisable pattern (tests and --debug-poison).
func putChunkBuf(c *chunkBuf, poison bool) {
	if poison {
		full := c.data[:cap(c.data)]
		for i := range full {
			full[i] = poisonByte
		}
	}
	c.data, c.ranges, c.lo = c.data[:0], c.ranges[:0], 0
	bufPool.Put(c)
}

// poisonByte fills recycled buffers when poisoning is on. 0xDB never
// occurs in runs of the test data that checks for it.
const poisonByte = 0xDB
