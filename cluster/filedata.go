package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/dhdfs/dhdfs/nodes"
)

// A file's content is a sparse array of chunks: chunk i covers bytes
// [i*ChunkSize, (i+1)*ChunkSize) and may be shorter than that; a missing
// chunk, and the bytes past a short chunk's end, read as zeros. No chunk
// holds bytes at or past the file's size: every change that lowers the
// size trims chunks first, so growing a file again exposes only zeros.

// slot is a chunk placed at an index of a file.
type slot struct {
	Idx int64
	Ref ChunkRef
}

// chunkAt returns the chunk at index idx of ino, or ok=false for a hole.
func (m *Manager) chunkAt(ino Ino, idx int64) (ChunkRef, bool, error) {
	var ref ChunkRef
	var ok bool
	err := m.meta.view(func(txn *badger.Txn) error {
		v, found, err := get(txn, fileChunkKey(ino, idx))
		if err != nil || !found {
			return err
		}
		ref, err = decodeChunkRef(v)
		ok = err == nil
		return err
	})
	return ref, ok, err
}

// FileChunks returns the chunk references of a file in index order.
func (m *Manager) fileChunks(ino Ino) ([]slot, error) {
	var out []slot
	err := m.meta.view(func(txn *badger.Txn) error {
		prefix := inoKey(kFile, ino)
		return scan(txn, prefix, false, func(k, v []byte) error {
			ref, err := decodeChunkRef(v)
			if err != nil {
				return err
			}
			out = append(out, slot{Idx: chunkIndex(k, prefix), Ref: ref})
			return nil
		})
	})
	return out, err
}

// commitSlots points the file's chunk indexes at staged chunks, taking over
// the references the staging took, and releases the chunks they replace.
// The file's size grows to minSize if it is smaller.
func (m *Manager) commitSlots(ino Ino, slots []slot, minSize int64, touch bool) error {
	for start := 0; start < len(slots) || start == 0; start += txnBatch {
		batch := slots[start:min(start+txnBatch, len(slots))]
		var zero []nodes.ChunkID
		err := m.meta.update(func(txn *badger.Txn) error {
			zero = zero[:0:0]
			n, err := getInode(txn, ino)
			if err != nil {
				return err
			}
			if err := countStored(txn, &n); err != nil {
				return err
			}
			for _, s := range batch {
				key := fileChunkKey(ino, s.Idx)
				v, ok, err := get(txn, key)
				if err != nil {
					return err
				}
				n.Stored += int64(s.Ref.Size)
				if ok {
					old, err := decodeChunkRef(v)
					if err != nil {
						return err
					}
					n.Stored -= int64(old.Size)
					// Same id: the staged reference is one too many.
					z, err := decRef(txn, old.ID)
					if err != nil {
						return err
					}
					if z {
						zero = append(zero, old.ID)
					}
				}
				if err := set(txn, key, s.Ref.encode()); err != nil {
					return err
				}
			}
			n.Size = max(n.Size, minSize)
			if touch {
				t := now()
				n.Mtime, n.Ctime = t, t
			}
			return putInode(txn, &n)
		})
		if err != nil {
			return fmt.Errorf("commit chunks of inode %d: %w", ino, err)
		}
		m.collect(zero)
	}
	return nil
}

// countStored sets n.Stored from the file's chunk slots if it is unknown
// (an inode written before it was kept), inside txn before any change.
func countStored(txn *badger.Txn, n *Inode) error {
	if n.Stored >= 0 {
		return nil
	}
	n.Stored = 0
	return scan(txn, inoKey(kFile, n.Ino), false, func(_, v []byte) error {
		ref, err := decodeChunkRef(v)
		n.Stored += int64(ref.Size)
		return err
	})
}

// dropChunksFrom deletes every chunk of ino at index from or above, in
// batches, then lowers the size to size. Until then the remaining chunks
// all lie inside the old size, so no chunk is ever past the end.
func (m *Manager) dropChunksFrom(ino Ino, from int64, size int64) error {
	return m.dropChunks(ino, from, -1, size)
}

// dropChunks makes chunks [from, to) of ino holes (to < 0: every chunk
// from on), in batches, then lowers the size to shrinkTo unless that is
// negative.
func (m *Manager) dropChunks(ino Ino, from, to int64, shrinkTo int64) error {
	prefix := inoKey(kFile, ino)
	var stop []byte
	if to >= 0 {
		stop = fileChunkKey(ino, to)
	}
	for {
		var zero []nodes.ChunkID
		done := false
		err := m.meta.update(func(txn *badger.Txn) error {
			zero = zero[:0:0]
			n, err := getInode(txn, ino)
			gone := errors.Is(err, ErrNotFound) // freeing an orphan whose inode went first
			if err != nil && !gone {
				return err
			}
			if !gone {
				if err := countStored(txn, &n); err != nil {
					return err
				}
			}
			var keys [][]byte
			var refs []ChunkRef
			opts := badger.DefaultIteratorOptions
			opts.Prefix = prefix
			it := txn.NewIterator(opts)
			for it.Seek(fileChunkKey(ino, from)); it.Valid() && len(keys) < txnBatch; it.Next() {
				if stop != nil && bytes.Compare(it.Item().Key(), stop) >= 0 {
					break
				}
				v, err := it.Item().ValueCopy(nil)
				if err != nil {
					it.Close()
					return fmt.Errorf("read metadata: %w", err)
				}
				ref, err := decodeChunkRef(v)
				if err != nil {
					it.Close()
					return err
				}
				keys, refs = append(keys, it.Item().KeyCopy(nil)), append(refs, ref)
			}
			it.Close()
			for i, k := range keys {
				if err := del(txn, k); err != nil {
					return err
				}
				z, err := decRef(txn, refs[i].ID)
				if err != nil {
					return err
				}
				if z {
					zero = append(zero, refs[i].ID)
				}
				n.Stored -= int64(refs[i].Size)
			}
			done = len(keys) < txnBatch
			if gone {
				return nil
			}
			if done && shrinkTo >= 0 {
				n.Size = min(n.Size, shrinkTo)
			}
			return putInode(txn, &n)
		})
		if err != nil {
			return fmt.Errorf("drop chunks of inode %d: %w", ino, err)
		}
		m.collect(zero)
		if done {
			return nil
		}
	}
}

// truncate sets the size of a regular file. The chunk the new end falls
// inside is cut there (a new chunk holding the bytes before the end),
// and that chunk and the size change in one transaction, so that no
// chunk ever holds bytes past the size: growing the file again exposes
// zeros only, also after a failure or a crash part way. Chunks wholly
// past the end go afterwards, in batches; a truncation marker, set in the
// same transaction as the size, lets the next open finish that after a
// crash. Whatever the old size, the end chunk is checked, so truncating
// again repairs a file an earlier version left with bytes past its end.
func (m *Manager) truncate(ctx context.Context, ino Ino, size int64) error {
	if size < 0 {
		return fmt.Errorf("truncate to %d: %w", size, ErrInvalid)
	}
	n, err := m.inode(ino)
	if err != nil {
		return err
	}
	if !n.IsRegular() {
		if n.IsDir() {
			return ErrIsDir
		}
		return ErrInvalid
	}
	cs := int64(m.cfg.ChunkSize)
	idx, keep := size/cs, int(size%cs)
	for attempt := 0; ; attempt++ {
		old, cut, err := m.cutChunk(ctx, ino, idx, keep, m.wantFor(&n))
		if err != nil {
			return err
		}
		var zero []nodes.ChunkID
		beyond := false
		err = m.meta.update(func(txn *badger.Txn) error {
			zero = zero[:0:0]
			n, err := getInode(txn, ino)
			if err != nil {
				return err
			}
			if err := countStored(txn, &n); err != nil {
				return err
			}
			if cut != nil {
				// The end chunk must still be the one cut.
				v, ok, err := get(txn, fileChunkKey(ino, idx))
				if err != nil {
					return err
				}
				if cur, _ := decodeChunkRef(v); !ok || cur != old {
					return errChanged
				}
				if err := set(txn, fileChunkKey(ino, idx), cut.encode()); err != nil {
					return err
				}
				n.Stored += int64(cut.Size - old.Size)
				if z, err := decRef(txn, old.ID); err != nil {
					return err
				} else if z {
					zero = append(zero, old.ID)
				}
			}
			if beyond, err = hasChunkFrom(txn, ino, (size+cs-1)/cs); err != nil {
				return err
			}
			if beyond {
				if err := set(txn, inoKey(kTruncate, ino), nil); err != nil {
					return err
				}
			}
			t := now()
			n.Size, n.Mtime, n.Ctime = size, t, t
			return putInode(txn, &n)
		})
		if errors.Is(err, errChanged) && attempt < 10 {
			m.releaseChunks([]nodes.ChunkID{cut.ID})
			continue
		}
		if err != nil {
			if cut != nil {
				m.releaseChunks([]nodes.ChunkID{cut.ID})
			}
			return fmt.Errorf("truncate inode %d: %w", ino, err)
		}
		m.collect(zero)
		if beyond {
			return m.finishTruncate(ino)
		}
		return nil
	}
}

// errChanged means a transaction found what it was to change changed
// meanwhile; the caller starts over.
var errChanged = errors.New("changed meanwhile")

// cutChunk returns the chunk at idx of ino and, if it holds more than
// keep bytes, a new chunk of its first keep bytes, stored and synced with
// one reference for the caller (nil if there is nothing to cut).
func (m *Manager) cutChunk(ctx context.Context, ino Ino, idx int64, keep int, want int) (ChunkRef, *ChunkRef, error) {
	ref, ok, err := m.chunkAt(ino, idx)
	if err != nil || !ok || ref.Size <= keep {
		return ref, nil, err
	}
	data, err := m.readChunk(ctx, ref, nil)
	if err != nil {
		return ref, nil, err
	}
	st, err := m.stageChunk(ctx, data[:keep], want)
	if err != nil {
		return ref, nil, err
	}
	if err := m.syncDrives(st.Touched); err != nil {
		m.releaseChunks([]nodes.ChunkID{st.Ref.ID})
		return ref, nil, err
	}
	return ref, &st.Ref, nil
}

// hasChunkFrom reports whether ino has a chunk at index from or after.
func hasChunkFrom(txn *badger.Txn, ino Ino, from int64) (bool, error) {
	opts := badger.DefaultIteratorOptions
	opts.Prefix, opts.PrefetchValues = inoKey(kFile, ino), false
	it := txn.NewIterator(opts)
	defer it.Close()
	it.Seek(fileChunkKey(ino, from))
	return it.Valid(), nil
}

// finishTruncate drops the chunks of ino past its size and its truncation
// marker. It runs after a truncation and, for markers a crash left, at
// open.
func (m *Manager) finishTruncate(ino Ino) error {
	n, err := m.inode(ino)
	if errors.Is(err, ErrNotFound) {
		return m.meta.update(func(txn *badger.Txn) error { return del(txn, inoKey(kTruncate, ino)) })
	}
	if err != nil {
		return err
	}
	cs := int64(m.cfg.ChunkSize)
	if err := m.dropChunks(ino, (n.Size+cs-1)/cs, -1, -1); err != nil {
		return err
	}
	return m.meta.update(func(txn *badger.Txn) error { return del(txn, inoKey(kTruncate, ino)) })
}

// wantFor returns the replication factor for an inode's new chunks.
func (m *Manager) wantFor(n *Inode) int {
	if n.Replicas > 0 {
		return int(n.Replicas)
	}
	return m.cfg.Replicas
}

// Hold records that the kernel knows inode ino (it was looked up or
// created through the mount). Like a local filesystem, dhdfs keeps an
// unlinked inode until the kernel forgets it, not only until its last
// handle closes: a process may still fstat or open it.
func (m *Manager) Hold(ino Ino) {
	m.filesMu.Lock()
	m.held[ino] = struct{}{}
	m.filesMu.Unlock()
}

// Forget undoes Hold when the kernel forgets ino, freeing it if it has no
// name and no open handle left.
func (m *Manager) Forget(ino Ino) error {
	m.filesMu.Lock()
	delete(m.held, ino)
	m.filesMu.Unlock()
	return m.maybeFree(ino)
}

// maybeFree frees ino if it is an orphan that is neither open nor held.
func (m *Manager) maybeFree(ino Ino) error {
	if ino == 0 {
		return nil
	}
	m.filesMu.Lock()
	_, held := m.held[ino]
	_, open := m.files[ino]
	m.filesMu.Unlock()
	if held || open {
		return nil
	}
	return m.freeOrphan(ino)
}

// freeOrphan deletes an inode that has no name: its chunks, then itself.
func (m *Manager) freeOrphan(ino Ino) error {
	var isOrphan bool
	err := m.meta.view(func(txn *badger.Txn) error {
		_, ok, err := get(txn, inoKey(kOrphan, ino))
		isOrphan = ok
		return err
	})
	if err != nil || !isOrphan {
		return err
	}
	if err := m.dropChunksFrom(ino, 0, 0); err != nil {
		return err
	}
	return m.meta.update(func(txn *badger.Txn) error {
		// Close and the kernel's Forget may free one orphan at once: the
		// one that finds the mark gone has nothing left to do (reading
		// the mark also makes the two transactions conflict).
		if _, ok, err := get(txn, inoKey(kOrphan, ino)); err != nil || !ok {
			return err
		}
		if err := dropXattrs(txn, ino); err != nil {
			return err
		}
		if err := del(txn, inoKey(kInode, ino)); err != nil {
			return err
		}
		if err := addCount(txn, inodeCountKey, -1); err != nil {
			return err
		}
		return del(txn, inoKey(kOrphan, ino))
	})
}

// recover finishes work a crash interrupted: it frees orphaned inodes,
// collects chunks whose last reference was dropped and, after a crash,
// recounts references. It runs at open, before any handle exists.
func (m *Manager) recover() error {
	var orphans, truncating []Ino
	var crashed bool
	err := m.meta.view(func(txn *badger.Txn) error {
		_, clean, err := get(txn, cleanKey)
		crashed = !clean
		if err != nil {
			return err
		}
		inos := func(kind byte, out *[]Ino) error {
			return scan(txn, []byte{kind}, true, func(k, _ []byte) error {
				if len(k) == 9 {
					*out = append(*out, Ino(binary.BigEndian.Uint64(k[1:])))
				}
				return nil
			})
		}
		if err := inos(kOrphan, &orphans); err != nil {
			return err
		}
		return inos(kTruncate, &truncating)
	})
	if err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	// Counted first: freeing orphans below must find the count there.
	if err := m.ensureInodeCount(); err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	for _, ino := range truncating {
		if err := m.finishTruncate(ino); err != nil {
			return fmt.Errorf("recover: finish truncating inode %d: %w", ino, err)
		}
	}
	for _, ino := range orphans {
		if err := m.freeOrphan(ino); err != nil {
			return fmt.Errorf("recover: free inode %d: %w", ino, err)
		}
	}
	leaked, swept := 0, 0
	if crashed {
		// Writes staged before a crash took references that no file holds,
		// and may have stored copies they never recorded.
		if leaked, err = m.recountRefs(); err != nil {
			return fmt.Errorf("recover: %w", err)
		}
		for _, d := range m.driveList() {
			if s := d.usable(); s != nil {
				n, _ := m.sweepOrphans(d, s)
				swept += n
			}
		}
	}
	zero, err := m.zeroChunks()
	if err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	m.collect(zero)
	if len(orphans)+len(zero)+leaked+swept > 0 {
		m.log.Info("recovered interrupted work", "orphans", len(orphans), "chunks", len(zero), "leaked_refs", leaked, "orphan_copies", swept)
	}
	// Until a clean Close, the pool counts as crashed.
	return m.meta.update(func(txn *badger.Txn) error { return del(txn, cleanKey) })
}

// ensureInodeCount counts the inodes into inodeCountKey if the count is
// missing (a pool from before it was kept).
func (m *Manager) ensureInodeCount() error {
	return m.meta.update(func(txn *badger.Txn) error {
		if _, ok, err := get(txn, inodeCountKey); err != nil || ok {
			return err
		}
		return recountInodes(txn)
	})
}

// recountInodes sets the inode count to the inodes there are.
func recountInodes(txn *badger.Txn) error {
	n := uint64(0)
	err := scan(txn, []byte{kInode}, true, func(_, _ []byte) error {
		n++
		return nil
	})
	if err != nil {
		return err
	}
	return set(txn, inodeCountKey, binary.BigEndian.AppendUint64(nil, n))
}

// InodeCount returns how many inodes exist (files, directories, links and
// other nodes, the root and unlinked files still open included).
func (m *Manager) InodeCount() (uint64, error) {
	var n uint64
	err := m.meta.view(func(txn *badger.Txn) error {
		v, ok, err := get(txn, inodeCountKey)
		if ok && len(v) == 8 {
			n = binary.BigEndian.Uint64(v)
		}
		return err
	})
	return n, err
}

// cleanKey is present while the pool is closed cleanly.
var cleanKey = []byte{kCounter, 'c'}

// markClean records a clean close.
func (m *Manager) markClean() error {
	if err := m.meta.update(func(txn *badger.Txn) error { return set(txn, cleanKey, nil) }); err != nil {
		return err
	}
	return m.meta.sync()
}

// zeroChunks lists chunks whose reference count fell to zero.
func (m *Manager) zeroChunks() ([]nodes.ChunkID, error) {
	var zero []nodes.ChunkID
	err := m.meta.view(func(txn *badger.Txn) error {
		return scan(txn, []byte{kZero}, true, func(k, _ []byte) error {
			var id nodes.ChunkID
			if len(k) == 1+len(id) {
				copy(id[:], k[1:])
				zero = append(zero, id)
			}
			return nil
		})
	})
	return zero, err
}

// recountRefs sets every chunk's reference count to the number of file
// slots pointing at it. Only safe when no write is staged: at open.
func (m *Manager) recountRefs() (int, error) {
	counts := map[nodes.ChunkID]uint64{}
	var fixes []nodes.ChunkID
	err := m.meta.view(func(txn *badger.Txn) error {
		err := scan(txn, []byte{kFile}, false, func(_, v []byte) error {
			ref, err := decodeChunkRef(v)
			if err != nil {
				return err
			}
			counts[ref.ID]++
			return nil
		})
		if err != nil {
			return err
		}
		return scan(txn, []byte{kChunk}, false, func(k, v []byte) error {
			rec, err := decodeChunkRecord(v)
			if err != nil {
				return err
			}
			var id nodes.ChunkID
			copy(id[:], k[1:])
			if rec.Refs != counts[id] {
				fixes = append(fixes, id)
			}
			return nil
		})
	})
	if err != nil {
		return 0, err
	}
	for start := 0; start < len(fixes); start += txnBatch {
		batch := fixes[start:min(start+txnBatch, len(fixes))]
		err := m.meta.update(func(txn *badger.Txn) error {
			for _, id := range batch {
				rec, ok, err := getChunkRecord(txn, id)
				if err != nil || !ok {
					return err
				}
				rec.Refs = counts[id]
				if err := set(txn, chunkKey(kChunk, id), rec.encode()); err != nil {
					return err
				}
				if rec.Refs == 0 {
					if err := set(txn, chunkKey(kZero, id), nil); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	return len(fixes), nil
}
