package nodes

import (
	"hash/crc32"
	"sync"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crcShareMin: the CRC of a smaller chunk is computed again rather than
// shared, which costs more.
const crcShareMin = 256 << 10

// CRC32C returns the CRC-32C of b.
func CRC32C(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// ChunkCRC returns the CRC-32C of data, the bytes of chunk id, computed
// once for Puts of the same chunk that run at the same time: the pool
// writes a chunk's copies to its drives in parallel, and a CRC pass over
// each copy was a tenth of the CPU a GiB written cost. The id names the
// bytes, so callers that share a result hash the same bytes; a caller
// that put other bytes under the id (none should) would get an entry that
// fails its check and reads as damaged, never wrong bytes.
func ChunkCRC(id ChunkID, data []byte) uint32 {
	if len(data) < crcShareMin {
		return CRC32C(data) // cheaper than sharing
	}
	crcs.mu.Lock()
	if c := crcs.running[id]; c != nil && c.size == len(data) {
		crcs.mu.Unlock()
		<-c.done
		return c.crc
	}
	c := &crcCall{size: len(data), done: make(chan struct{})}
	crcs.running[id] = c
	crcs.mu.Unlock()
	c.crc = CRC32C(data)
	close(c.done)
	crcs.mu.Lock()
	if crcs.running[id] == c {
		delete(crcs.running, id)
	}
	crcs.mu.Unlock()
	return c.crc
}

// crcs holds the CRCs being computed, by chunk.
var crcs = struct {
	mu      sync.Mutex
	running map[ChunkID]*crcCall // guarded by mu
}{running: map[ChunkID]*crcCall{}}

// crcCall is one CRC computation that later callers may wait for.
type crcCall struct {
	size int
	done chan struct{}
	crc  uint32 // set before done is closed
}

// ShareCRC tells the stores of this process the CRC-32C of the size bytes
// of chunk id, for the Puts of its copies that follow, until the returned
// function is called. The caller knows it from sums it computed anyway
// (see CombineCRC32C).
func ShareCRC(id ChunkID, size int, crc uint32) (done func()) {
	c := &crcCall{size: size, done: make(chan struct{}), crc: crc}
	close(c.done)
	crcs.mu.Lock()
	crcs.running[id] = c
	crcs.mu.Unlock()
	return func() {
		crcs.mu.Lock()
		if crcs.running[id] == c {
			delete(crcs.running, id)
		}
		crcs.mu.Unlock()
	}
}

// CombineCRC32C returns the CRC-32C of a chunk of size bytes from the
// CRC-32Cs of its consecutive blocks of block bytes (the last one
// shorter), without reading the bytes again: the CRC of A followed by B
// is the CRC of A advanced over len(B) zero bytes, xor the CRC of B
// (zlib's crc32_combine). The pool already sums every block of a chunk
// it writes; this gives the drives the whole chunk's CRC for free.
func CombineCRC32C(sums []uint32, block, size int) uint32 {
	if len(sums) == 0 {
		return CRC32C(nil)
	}
	crc := sums[0]
	for i, s := range sums[1:] {
		crc = advanceZeros(crc, int64(min(block, size-(i+1)*block))) ^ s
	}
	return crc
}

// advanceZeros returns crc advanced over n zero bytes: the operator for
// each set bit of n applied in turn, 32 table lookups a bit.
func advanceZeros(crc uint32, n int64) uint32 {
	ops := zeroOps()
	for k := 0; n > 0; k, n = k+1, n>>1 {
		if n&1 != 0 {
			crc = ops[k].apply(crc)
		}
	}
	return crc
}

// zeroOps returns, for each k, the operator that advances a CRC-32C over
// 2^k zero bytes, made once by squaring the one-bit operator.
var zeroOps = sync.OnceValue(func() *[63]gf2Op {
	var ops [63]gf2Op
	var step gf2Op
	step[0] = 0x82f63b78 // the Castagnoli polynomial, bit-reversed
	for i := 1; i < 32; i++ {
		step[i] = 1 << (i - 1)
	}
	for range 3 { // one bit → one byte
		step = step.then(&step)
	}
	for k := range ops {
		ops[k] = step
		step = step.then(&step)
	}
	return &ops
})

// gf2Op is a linear operator on CRC-32 values: row i is the image of
// bit i.
type gf2Op [32]uint32

func (op *gf2Op) apply(v uint32) uint32 {
	var out uint32
	for i := 0; v != 0; i, v = i+1, v>>1 {
		if v&1 != 0 {
			out ^= op[i]
		}
	}
	return out
}

// then returns the operator that applies op and then next.
func (op *gf2Op) then(next *gf2Op) gf2Op {
	var out gf2Op
	for i := range out {
		out[i] = next.apply(op[i])
	}
	return out
}
