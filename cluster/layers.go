package cluster

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/dhdfs/dhdfs/nodes"
)

// A chunk slot of a file (bytes [i*ChunkSize, (i+1)*ChunkSize)) holds
// layers of pieces over zeros. A piece is a range of a stored chunk placed
// at an offset of the slot, or a range of zeros that stores nothing; a
// later layer hides the earlier ones where they overlap, and bytes no
// piece covers read as zeros.
//
// A write therefore costs about its own size: it becomes a new top layer
// (a small chunk holding just the bytes written) instead of a rewrite of
// the whole chunk, and the chunks below stay immutable and verified. Old
// layers stay until the new one is durable, so a crash before then reverts
// the slot to what it was (recover drops a top layer whose chunk no drive
// holds); after a sync, layers hidden whole are dropped (settling), and
// when a slot has too many layers, compaction replaces them with one
// chunk of the merged content.

// piece is one layer of a slot.
type piece struct {
	// Ref is the stored chunk the bytes come from; a zero ID means zeros.
	Ref ChunkRef
	// Off is the offset in the stored chunk of the piece's first byte.
	Off int
	// At is where the piece lies in the slot, Len how long it is.
	At, Len int
	// Unsynced marks a piece committed before its chunk was known to be
	// durable: until the sync round that makes it so has settled the
	// slot, the open after a crash drops it if no drive holds its chunk.
	Unsynced bool
}

func (p piece) zero() bool        { return p.Ref.ID == nodes.ChunkID{} }
func (p piece) end() int          { return p.At + p.Len }
func (p piece) stored() bool      { return !p.zero() && p.Len > 0 }
func wholePiece(r ChunkRef) piece { return piece{Ref: r, Len: r.Size} }

// layers are a slot's pieces, oldest first.
type layers []piece

// maxLayers bounds the layers of a slot: a staging that would make more
// merges the slot into one chunk instead (File.stage). Reads of a slot
// fetch at most this many chunks.
const maxLayers = 256

// maxDecodedLayers is what a slot record may hold at most before it
// counts as corrupt: maxLayers plus what metadata-only changes add, with
// room to spare.
const maxDecodedLayers = 16 * maxLayers

// length returns the end of the slot's content: bytes from it on read as
// zeros.
func (ls layers) length() int {
	n := 0
	for _, p := range ls {
		n = max(n, p.end())
	}
	return n
}

// single reports whether the slot is one stored chunk from its start.
func (ls layers) single() (ChunkRef, bool) {
	if len(ls) == 1 && ls[0].stored() && ls[0].Off == 0 && ls[0].At == 0 && ls[0].Len == ls[0].Ref.Size && !ls[0].Unsynced {
		return ls[0].Ref, true
	}
	return ChunkRef{}, false
}

// span is a range [lo, hi) of a slot.
type span struct{ lo, hi int }

// visible calls fn for each range of [lo, hi) that a piece shows, with the
// piece's index in ls, newest layers first; ranges no piece covers are
// left out (zeros).
func (ls layers) visible(lo, hi int, fn func(i int, s span)) {
	open := []span{{lo, hi}}
	for i := len(ls) - 1; i >= 0 && len(open) > 0; i-- {
		p := ls[i]
		var rest []span
		for _, s := range open {
			a, b := max(s.lo, p.At), min(s.hi, p.end())
			if a >= b {
				rest = append(rest, s)
				continue
			}
			fn(i, span{a, b})
			if s.lo < a {
				rest = append(rest, span{s.lo, a})
			}
			if b < s.hi {
				rest = append(rest, span{b, s.hi})
			}
		}
		open = rest
	}
}

// storedBytes returns how many bytes of the slot stored pieces show (what
// st_blocks counts).
func (ls layers) storedBytes() int64 {
	var n int64
	ls.visible(0, ls.length(), func(i int, s span) {
		if ls[i].stored() {
			n += int64(s.hi - s.lo)
		}
	})
	return n
}

// refs returns the chunk of every stored piece, one per piece: each holds
// a reference.
func (ls layers) refs() []ChunkRef {
	out := make([]ChunkRef, 0, len(ls))
	for _, p := range ls {
		if !p.zero() {
			out = append(out, p.Ref)
		}
	}
	return out
}

// upperBytes returns the bytes of the stored pieces above the first
// layer: what rewriting the slot as one chunk would fold in.
func (ls layers) upperBytes() int64 {
	var n int64
	for i, p := range ls {
		if i > 0 && p.stored() {
			n += int64(p.Len)
		}
	}
	return n
}

// hasData reports whether any stored piece shows a byte.
func (ls layers) hasData() bool { return ls.storedBytes() > 0 }

// cut returns the slot with everything from keep on removed: pieces past
// it dropped, the one across it shortened. dropped are the pieces that
// went whole (their references are the caller's to release).
func (ls layers) cut(keep int) (out layers, dropped []piece) {
	for _, p := range ls {
		switch {
		case p.At >= keep:
			dropped = append(dropped, p)
		case p.end() > keep:
			p.Len = keep - p.At
			out = append(out, p)
		default:
			out = append(out, p)
		}
	}
	return out, dropped
}

// settle returns the slot with every piece durable (the caller knows
// they are) and without the pieces no byte of it shows any more, and
// those pieces.
func (ls layers) settle() (out layers, hidden []piece) {
	seen := make([]bool, len(ls))
	ls.visible(0, ls.length(), func(i int, _ span) { seen[i] = true })
	for i, p := range ls {
		p.Unsynced = false
		if seen[i] {
			out = append(out, p)
		} else {
			hidden = append(hidden, p)
		}
	}
	return out, hidden
}

// unsynced reports whether a piece may not be durable yet.
func (ls layers) unsynced() bool {
	for _, p := range ls {
		if p.Unsynced {
			return true
		}
	}
	return false
}

// Flags of a piece in a version 2 slot value.
const (
	pieceStored   = 1    // a stored chunk's range follows; else zeros
	pieceUnsynced = 0x80 // piece.Unsynced
)

// Slot values: version 1 is a single ChunkRef (a whole stored chunk at the
// start of the slot, the only kind before layers); version 2 lists pieces.
const layersVersion = 2

func (ls layers) encode() []byte {
	if r, ok := ls.single(); ok {
		return r.encode()
	}
	b := make([]byte, 0, 2+len(ls)*48)
	b = append(b, layersVersion)
	b = binary.AppendUvarint(b, uint64(len(ls)))
	for _, p := range ls {
		var flags byte
		if p.Unsynced {
			flags = pieceUnsynced
		}
		if p.zero() {
			b = append(b, flags)
		} else {
			b = append(b, flags|pieceStored)
			b = append(b, p.Ref.ID[:]...)
			b = binary.AppendUvarint(b, uint64(p.Ref.Size))
			b = binary.AppendUvarint(b, uint64(p.Off))
		}
		b = binary.AppendUvarint(b, uint64(p.At))
		b = binary.AppendUvarint(b, uint64(p.Len))
	}
	return b
}

func decodeLayers(b []byte) (layers, error) {
	if len(b) > 0 && b[0] == recordVersion {
		r, err := decodeChunkRef(b)
		if err != nil || r.Size == 0 {
			return nil, err // an empty chunk shows nothing: a hole
		}
		return layers{wholePiece(r)}, nil
	}
	d := decoder{b: b}
	if d.byte1() != layersVersion {
		d.fail()
	}
	n := d.uvarint()
	if n > maxDecodedLayers {
		d.fail()
		n = 0
	}
	ls := make(layers, 0, n)
	for i := uint64(0); i < n && d.err == nil; i++ {
		var p piece
		kind := d.byte1()
		p.Unsynced = kind&pieceUnsynced != 0
		// Every number is at most a chunk: checked before it becomes an
		// int, so no sum below can overflow.
		size := func() int {
			v := d.uvarint()
			if v > MaxChunkSize {
				d.fail()
				return 0
			}
			return int(v)
		}
		switch kind &^ pieceUnsynced {
		case 0:
		case pieceStored:
			copy(p.Ref.ID[:], d.bytes(uint64(len(p.Ref.ID))))
			p.Ref.Size = size()
			p.Off = size()
		default:
			d.fail()
		}
		p.At, p.Len = size(), size()
		if p.At+p.Len > MaxChunkSize || (!p.zero() && p.Off+p.Len > p.Ref.Size) || p.Len <= 0 {
			d.fail()
		}
		ls = append(ls, p)
	}
	if err := d.done("chunk slot"); err != nil {
		return nil, err
	}
	return ls, nil
}

// String renders the layers for logs and tests.
func (ls layers) String() string {
	s := "["
	for i, p := range ls {
		if i > 0 {
			s += " "
		}
		if p.zero() {
			s += fmt.Sprintf("zero@%d+%d", p.At, p.Len)
		} else {
			s += fmt.Sprintf("%s[%d:]@%d+%d", p.Ref.ID.Short()[:6], p.Off, p.At, p.Len)
		}
	}
	return s + "]"
}

// equal reports whether two slots are the same layers.
func (ls layers) equal(o layers) bool { return slices.Equal(ls, o) }

// stagePlan says how a staging stores a buffer: as its own written
// ranges, one piece each (fold false), or as one piece holding the slot's
// content over [lo, hi) with the buffer written over it.
type stagePlan struct {
	fold   bool
	lo, hi int
}

// tierWidth is how many pieces of one size class a slot keeps before
// folding them into one (see planStage).
const tierWidth = 8

// planStage decides how to store a buffer with written ranges (sorted,
// bytes written in all) over a slot with layers below. Three costs are
// balanced: bytes rewritten, layers a read may have to fetch, and the
// size of the slot's record, which every commit rewrites.
//
//   - The whole slot is rewritten as one piece when its layers would
//     exceed maxLayers, or when the bytes of the layers above the first
//     and of the buffer reach the slot's length: a slot is rewritten at
//     most once per its length in new bytes, so random writes cost at
//     most twice their bytes per copy.
//   - Otherwise small pieces are folded in tiers, as a log-structured
//     merge tree does: when tierWidth-1 pieces at the top of the slot are
//     no bigger than twice the new one, they and the new one become one
//     piece, and that repeats with the bigger piece. Appends and other
//     writes that stay together (a log, a database's journal) then keep
//     about tierWidth per size class, a few dozen layers, and rewrite
//     each byte log_tierWidth(writes) times. Pieces are folded only while
//     the region they cover together stays dense (at most twice the
//     bytes they hold), so scattered random writes are never folded into
//     a mostly unchanged region.
//   - Several written ranges that lie close together are stored as one
//     piece of the region they span.
func planStage(below layers, ranges []span, written int) stagePlan {
	if len(ranges) == 0 {
		return stagePlan{}
	}
	lo, hi := ranges[0].lo, ranges[len(ranges)-1].hi
	length := below.length()
	if len(ranges) == 1 && lo == 0 && hi >= length {
		return stagePlan{} // it hides everything below: stored as written
	}
	if len(below)+len(ranges) > maxLayers ||
		len(below) > 0 && below.upperBytes()+int64(written) >= int64(length) {
		return stagePlan{fold: true, lo: 0, hi: max(length, hi)}
	}
	size, fold, top := written, false, len(below)
	for {
		// The run of pieces at the top no bigger than twice what is being
		// stored, and the region it and that spans.
		n, rlo, rhi, rsize := 0, lo, hi, size
		for i := top - 1; i >= 0 && n < tierWidth-1; i-- {
			p := below[i]
			if !p.stored() || p.Len > 2*size {
				break
			}
			nlo, nhi := min(rlo, p.At), max(rhi, p.end())
			if nhi-nlo > 2*(rsize+p.Len) {
				break // sparse: the region would be mostly old bytes
			}
			n, rlo, rhi, rsize = n+1, nlo, nhi, rsize+p.Len
		}
		if n < tierWidth-1 {
			break
		}
		fold, top, lo, hi, size = true, top-n, rlo, rhi, rsize
	}
	if !fold && len(ranges) > 1 && hi-lo <= 2*written {
		fold = true // close ranges: one piece
	}
	if !fold {
		return stagePlan{}
	}
	return stagePlan{fold: true, lo: lo, hi: hi}
}
