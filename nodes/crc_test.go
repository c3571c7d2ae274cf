package nodes

import (
	"math/rand/v2"
	"sync"
	"testing"
)

// Concurrent Puts of one chunk share its CRC; each gets the right one,
// and bytes of another length under the same id get their own.
func TestDataCRCShared(t *testing.T) {
	id, data := randBytesID(1, 1<<20)
	want := CRC32C(data)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			b := data
			if i%4 == 3 {
				b = data[:crcShareMin]
			}
			if got, w := ChunkCRC(id, b), CRC32C(b); got != w {
				t.Errorf("caller %d: CRC %08x, want %08x", i, got, w)
			}
		})
	}
	wg.Wait()
	if got := ChunkCRC(id, data); got != want {
		t.Fatalf("CRC %08x, want %08x", got, want)
	}
	crcs.mu.Lock()
	defer crcs.mu.Unlock()
	if len(crcs.running) != 0 {
		t.Fatalf("%d computations left behind", len(crcs.running))
	}
}

// CombineCRC32C gives the CRC of the whole from the CRCs of its blocks.
func TestCombineCRC32C(t *testing.T) {
	_, data := randBytesID(3, 1<<20)
	for _, size := range []int{0, 1, 4095, 4096, 65536, 65537, 1<<20 - 3, 1 << 20} {
		for _, block := range []int{1, 4096, 65536} {
			if size > 200000 && block == 1 {
				continue
			}
			var sums []uint32
			for off := 0; off < size; off += block {
				sums = append(sums, CRC32C(data[off:min(off+block, size)]))
			}
			if got, want := CombineCRC32C(sums, block, size), CRC32C(data[:size]); got != want {
				t.Fatalf("%d bytes in blocks of %d: %08x, want %08x", size, block, got, want)
			}
		}
	}
	// A CRC shared for a chunk is the one its Puts use.
	id, d := randBytesID(4, 1<<20)
	done := ShareCRC(id, len(d), 0x12345678)
	if got := ChunkCRC(id, d); got != 0x12345678 {
		t.Fatalf("shared CRC not used: %08x", got)
	}
	done()
	if got := ChunkCRC(id, d); got != CRC32C(d) {
		t.Fatalf("CRC after sharing ended: %08x", got)
	}
}

// randBytesID returns n random bytes that differ for every seed, and
// their id.
func randBytesID(seed uint64, n int) (ChunkID, []byte) {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, 7))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return SumChunk(b), b
}
