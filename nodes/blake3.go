package nodes

import (
	"math/bits"

	"lukechampine.com/blake3"
	"lukechampine.com/blake3/guts"
)

// blake3Sum256 is blake3.Sum256 without goroutines. The library hashes
// a long input in parallel, one goroutine per 16 KiB: 64 for a 1 MiB
// chunk, whose creation, wake-ups and hand-offs cost the mount more CPU
// than the hashing on a machine whose cores are busy with the chunks'
// other work anyway. This walks the same tree on the calling goroutine,
// 16 chunks at a time through the library's vector code, and merges
// subtrees on a stack as the library's Hasher does.
func blake3Sum256(b []byte) (id ChunkID) {
	if len(b) <= guts.ChunkSize {
		return blake3.Sum256(b) // one chunk: no goroutines there
	}
	var stack [64][8]uint32
	var counter uint64 // chunks merged so far; bit i: a subtree of 2^i chunks on the stack
	push := func(cv [8]uint32, height int) {
		i := height
		for ; counter&(1<<i) != 0; i++ {
			cv = guts.ChainingValue(guts.ParentNode(stack[i], cv, &guts.IV, 0))
		}
		stack[i] = cv
		counter += 1 << height
	}
	// The last chunk, whole or not, is kept for the root.
	last := len(b) % guts.ChunkSize
	if last == 0 {
		last = guts.ChunkSize
	}
	body := b[:len(b)-last]
	const group = guts.MaxSIMD * guts.ChunkSize
	for ; len(body) >= group; body = body[group:] {
		// counter stays a multiple of MaxSIMD here, so each group is a
		// whole subtree of the tree.
		n := guts.CompressBuffer((*[group]byte)(body), group, &guts.IV, counter, 0)
		push(guts.ChainingValue(n), bits.TrailingZeros(guts.MaxSIMD))
	}
	for ; len(body) > 0; body = body[guts.ChunkSize:] {
		push(guts.ChainingValue(guts.CompressChunk(body[:guts.ChunkSize], &guts.IV, counter, 0)), 0)
	}
	n := guts.CompressChunk(b[len(b)-last:], &guts.IV, counter, 0)
	for i := bits.TrailingZeros64(counter); i < bits.Len64(counter); i++ {
		if counter&(1<<i) != 0 {
			n = guts.ParentNode(stack[i], guts.ChainingValue(n), &guts.IV, 0)
		}
	}
	n.Flags |= guts.FlagRoot
	out := guts.WordsToBytes(guts.CompressNode(n))
	copy(id[:], out[:])
	return id
}
