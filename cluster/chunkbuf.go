package cluster

import "sync"

// chunkBuf is the write-back content of one chunk of an open file. It
// stands for the whole chunk: bytes [0, len) are its content and every
// byte from len to the chunk's end reads as zero, exactly as a stored
// chunk shorter than the chunk size does.
//
// Its storage is recycled between files (a deleted file's data may still
// sit in it past len), so the bytes past len must never become visible
// without being written first. The methods below are the only code that
// touches data, and every one that lengthens the content writes each byte
// it exposes, with data or with zeros: a reader can never see a byte that
// no write to this chunk put there.
type chunkBuf struct {
	data []byte // len is the content's length; [len, cap) is scratch
}

// Len returns the length of the content.
func (c *chunkBuf) Len() int { return len(c.data) }

// Bytes returns the content. The slice is only valid until the next
// change and must not be modified by the caller.
func (c *chunkBuf) Bytes() []byte { return c.data }

// WriteAt copies p to offset off, as far as the buffer's capacity (the
// chunk size) allows, and returns the bytes copied. A gap between the old
// end and off is zeroed first: it is a hole inside the chunk.
func (c *chunkBuf) WriteAt(p []byte, off int) int {
	if off >= cap(c.data) {
		return 0
	}
	end := min(off+len(p), cap(c.data))
	if end > len(c.data) {
		old := len(c.data)
		c.data = c.data[:end]
		if off > old {
			clear(c.data[old:off])
		}
	}
	return copy(c.data[off:end], p)
}

// Zero makes bytes [from, to) of the chunk read as zeros. A range that
// reaches the content's end shortens the content instead, which reads the
// same and stores less.
func (c *chunkBuf) Zero(from, to int) {
	from = max(from, 0)
	if from >= len(c.data) || to <= from {
		return
	}
	if to >= len(c.data) {
		c.data = c.data[:from]
		return
	}
	clear(c.data[from:to])
}

// bufPool recycles chunk buffers of every chunk size: a buffer of another
// capacity is dropped rather than reused.
var bufPool sync.Pool // of *chunkBuf

// getChunkBuf returns an empty buffer for a chunk of size cs.
func getChunkBuf(cs int64) *chunkBuf {
	if c, ok := bufPool.Get().(*chunkBuf); ok && int64(cap(c.data)) == cs {
		c.data = c.data[:0]
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
	c.data = c.data[:0]
	bufPool.Put(c)
}

// poisonByte fills recycled buffers when poisoning is on. 0xDB never
// occurs in runs of the test data that checks for it.
const poisonByte = 0xDB
