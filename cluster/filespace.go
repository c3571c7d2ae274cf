package cluster

import (
	"context"
	"fmt"
	"io"
	"math"

	"github.com/dhdfs/dhdfs/cluster/kv"
)

// This file holds the calls that change which parts of a file are stored
// rather than what they say: fallocate(2)'s modes and lseek(2)'s
// SEEK_DATA/SEEK_HOLE. Chunks are placed when written, so there is no
// space to reserve ahead; what these calls can do is grow the size, check
// that the space exists, and turn ranges into holes.

// Allocate is fallocate(2) without flags (or with FALLOC_FL_KEEP_SIZE):
// it fails with ErrNoSpace when the pool could not store the part of
// [off, off+length) that is not stored yet, and otherwise grows the size
// to off+length unless keepSize. dhdfs reserves nothing: a later write can
// still find the drives full, as on a thin-provisioned volume.
func (f *File) Allocate(ctx context.Context, off, length int64, keepSize bool) error {
	if off < 0 || length <= 0 {
		return fmt.Errorf("allocate %d bytes at %d: %w", length, off, ErrInvalid)
	}
	end := off + length
	if end < off {
		return fmt.Errorf("allocate %d bytes at %d: %w", length, off, ErrFileTooBig)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	stored, err := f.m.storedIn(f.ino, off, end)
	if err != nil {
		return err
	}
	// Compared per copy: length times the copies could overflow.
	if need := length - stored; need > 0 {
		if _, free := f.m.Capacity(); need > free/int64(max(f.want, 1)) {
			return fmt.Errorf("allocate %d bytes (%d copies each), %d free: %w", need, f.want, free, ErrNoSpace)
		}
	}
	if !keepSize && end > f.size {
		f.size = end
		f.mtime, f.modified = now(), true
	}
	return nil
}

// ZeroRange makes [off, off+length) read as zeros: FALLOC_FL_PUNCH_HOLE
// (always with keepSize) and FALLOC_FL_ZERO_RANGE. Slots the range covers
// whole become holes and their space is released; the slots at its ends
// get a layer of zeros over the range, which stores nothing. Without
// keepSize a range past the end grows the file.
func (f *File) ZeroRange(ctx context.Context, off, length int64, keepSize bool) error {
	if off < 0 || length <= 0 {
		return fmt.Errorf("zero %d bytes at %d: %w", length, off, ErrInvalid)
	}
	if off+length < off {
		return fmt.Errorf("zero %d bytes at %d: %w", length, off, ErrFileTooBig)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	end := min(off+length, f.size) // past the end everything reads as zeros already
	if off < end {
		// Commit first: slots then change in the metadata alone, with no
		// buffer or staging of theirs in flight. (Committing
		// waits with f.mu released; the kernel holds the inode's lock
		// over fallocate, so no write to this file comes in meanwhile.)
		if err := f.flushLocked(ctx, f.m.durableClose()); err != nil {
			return err
		}
		cs := f.cs
		// A chunk is covered whole when the range spans its part inside
		// the file, which for the last chunk may be shorter than cs.
		first := (off + cs - 1) / cs
		last := end / cs // exclusive
		if end == f.size && end%cs != 0 {
			last++
		}
		if first < last {
			if err := f.m.dropChunks(f.ino, first, last, -1); err != nil {
				return err
			}
		}
		// The partly covered chunks at the ends: one piece when the range
		// lies inside a single chunk.
		pieces := [][2]int64{{off, min(end, first*cs)}, {max(off, last*cs), end}}
		if first > last {
			pieces = pieces[:1]
			pieces[0][1] = end
		}
		for _, r := range pieces {
			if r[0] >= r[1] {
				continue
			}
			// A layer of zeros over the range: metadata only. A slot left
			// with nothing but zeros becomes a hole.
			idx, in := r[0]/cs, int(r[0]%cs)
			z := piece{At: in, Len: int(r[1] - r[0])}
			err := f.m.editSlot(f.ino, idx, func(ls layers) (layers, []piece) {
				if len(ls) == 0 {
					return nil, nil
				}
				return holeIfEmpty(append(ls, z), nil)
			})
			if err != nil {
				return err
			}
		}
		f.mtime, f.modified = now(), true
	}
	if !keepSize && off+length > f.size {
		f.size = off + length
		f.mtime, f.modified = now(), true
	}
	return nil
}

// storedIn returns how many bytes of [from, to) of ino are stored in
// committed slots.
func (m *Manager) storedIn(ino Ino, from, to int64) (int64, error) {
	cs := int64(m.cfg.ChunkSize)
	var stored int64
	err := m.meta.view(func(txn kv.Reader) error {
		prefix := inoKey(kFile, ino)
		return scanFrom(txn, prefix, fileChunkKey(ino, from/cs), kv.ScanOptions{}, func(k, v []byte) error {
			idx := chunkIndex(k, prefix)
			if idx*cs >= to {
				return errStop
			}
			ls, err := decodeLayers(v)
			if err != nil {
				return err
			}
			base := idx * cs
			lo, hi := max(from, base)-base, min(to, base+cs)-base
			ls.visible(int(lo), int(hi), func(i int, s span) {
				if ls[i].stored() {
					stored += int64(s.hi - s.lo)
				}
			})
			return nil
		})
	})
	return stored, err
}

// Whence values of lseek(2) that look for data and holes.
const (
	SeekData = 3 // SEEK_DATA
	SeekHole = 4 // SEEK_HOLE
)

// Seek answers lseek(2)'s SEEK_DATA and SEEK_HOLE from off: the start of
// the next stored range or of the next hole, at chunk granularity (a
// stored chunk's zero tail counts as data, as a filesystem's partly
// written block does). Past the end it fails with io.EOF (ENXIO).
func (f *File) Seek(ctx context.Context, off int64, whence int) (int64, error) {
	if whence != SeekData && whence != SeekHole {
		return 0, fmt.Errorf("seek whence %d: %w", whence, ErrInvalid)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if off < 0 {
		return 0, fmt.Errorf("seek to %d: %w", off, ErrInvalid)
	}
	if off >= f.size {
		return 0, io.EOF
	}
	cs := f.cs
	buffered := func(idx int64) bool {
		_, d := f.dirty[idx]
		_, s := f.staging[idx]
		_, p := f.pending[idx]
		return d || s || p
	}
	for idx := off / cs; idx*cs < f.size; idx++ {
		has := buffered(idx)
		if !has {
			ls, err := f.m.slotAt(f.ino, idx)
			if err != nil {
				return 0, err
			}
			has = ls.hasData()
		}
		if has == (whence == SeekData) {
			return max(off, idx*cs), nil
		}
		if whence == SeekData {
			// Skip a run of holes in one scan rather than chunk by chunk.
			next, err := f.m.nextChunk(f.ino, idx+1)
			if err != nil {
				return 0, err
			}
			next = min(next, (f.size+cs-1)/cs) // none left: stop at the end
			for b := range f.dirty {
				if b > idx && b < next {
					next = b
				}
			}
			for b := range f.staging {
				if b > idx && b < next {
					next = b
				}
			}
			for b := range f.pending {
				if b > idx && b < next {
					next = b
				}
			}
			idx = next - 1
		}
	}
	if whence == SeekHole {
		return f.size, nil // the end of the file counts as a hole
	}
	return 0, io.EOF
}

// nextChunk returns the index of ino's first stored chunk at from or
// after, or math.MaxInt64 when there is none.
func (m *Manager) nextChunk(ino Ino, from int64) (int64, error) {
	next := int64(math.MaxInt64)
	err := m.meta.view(func(txn kv.Reader) error {
		prefix := inoKey(kFile, ino)
		return scanFrom(txn, prefix, fileChunkKey(ino, from), kv.ScanOptions{KeysOnly: true, Limit: 1}, func(k, _ []byte) error {
			next = chunkIndex(k, prefix)
			return nil
		})
	})
	return next, err
}
