package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dhdfs/dhdfs/cluster/kv"
	"github.com/dhdfs/dhdfs/nodes"
)

// A file's content is a sparse array of chunk slots: slot i covers bytes
// [i*ChunkSize, (i+1)*ChunkSize) and holds layers of pieces (layers.go); a
// missing slot, and the bytes of a slot no piece covers, read as zeros. No
// slot holds bytes at or past the file's size: every change that lowers
// the size cuts the slots first or with it, so growing a file again
// exposes only zeros.
//
// Layers committed before their chunks are durable leave the slot marked
// unsettled (key u ino idx → the sync epoch of the commit): after a sync
// round covering that epoch the slot is settled (layers no byte shows any
// more are dropped), and after a crash the next open drops the top layers
// whose chunks no drive holds, so the slot reads as before the lost
// writes.

// slot is a chunk slot of a file and its layers.
type slot struct {
	Idx    int64
	Layers layers
}

// getSlot reads the layers of slot idx of ino; ok is false for a hole.
func getSlot(txn kv.Reader, ino Ino, idx int64) (layers, bool, error) {
	v, ok, err := get(txn, fileChunkKey(ino, idx))
	if err != nil || !ok {
		return nil, false, err
	}
	ls, err := decodeLayers(v)
	if err != nil {
		return nil, false, fmt.Errorf("inode %d chunk %d: %w", ino, idx, err)
	}
	return ls, true, nil
}

// slotAt returns the layers of slot idx of ino, nil for a hole.
func (m *Manager) slotAt(ino Ino, idx int64) (layers, error) {
	var ls layers
	err := m.meta.view(func(txn kv.Reader) error {
		var err error
		ls, _, err = getSlot(txn, ino, idx)
		return err
	})
	return ls, err
}

// fileSlots returns the slots of a file in index order.
func (m *Manager) fileSlots(ino Ino) ([]slot, error) {
	var out []slot
	err := m.meta.view(func(txn kv.Reader) error {
		prefix := inoKey(kFile, ino)
		return scan(txn, prefix, false, func(k, v []byte) error {
			ls, err := decodeLayers(v)
			if err != nil {
				return err
			}
			out = append(out, slot{Idx: chunkIndex(k, prefix), Layers: ls})
			return nil
		})
	})
	return out, err
}

// scanSlots calls fn for every slot of every file in key order (a
// whole-keyspace scan: heal, status, fsck, reference counts). A slot that
// does not decode stops the scan with its error, unless bad is set: then
// bad gets its key and the scan goes on.
func scanSlots(txn kv.Reader, bad func(key []byte, ino Ino, idx int64), fn func(ino Ino, idx int64, ls layers) error) error {
	return scan(txn, []byte{kFile}, false, func(k, v []byte) error {
		if len(k) != 17 {
			return nil
		}
		ino, idx := Ino(binary.BigEndian.Uint64(k[1:9])), int64(binary.BigEndian.Uint64(k[9:17]))
		ls, err := decodeLayers(v)
		if err != nil {
			if bad == nil {
				return fmt.Errorf("inode %d chunk %d: %w", ino, idx, err)
			}
			bad(k, ino, idx)
			return nil
		}
		return fn(ino, idx, ls)
	})
}

// putSlot writes slot idx of ino inside txn, deleting it when no layer is
// left, and keeps n.Stored up to date (old is what was there).
func putSlot(txn kv.Txn, n *Inode, idx int64, old, ls layers) error {
	n.Stored += ls.storedBytes() - old.storedBytes()
	if len(ls) == 0 {
		return del(txn, fileChunkKey(n.Ino, idx))
	}
	return set(txn, fileChunkKey(n.Ino, idx), ls.encode())
}

// release drops one reference for each stored piece inside txn and
// returns the chunks whose last reference went.
func release(txn kv.Txn, pieces []piece) ([]nodes.ChunkID, error) {
	var zero []nodes.ChunkID
	for _, p := range pieces {
		if p.zero() {
			continue
		}
		z, err := decRef(txn, p.Ref.ID)
		if err != nil {
			return nil, err
		}
		if z {
			zero = append(zero, p.Ref.ID)
		}
	}
	return zero, nil
}

// commitLayers puts new layers on top of slots of ino, taking over the
// references staging took for their pieces. The file's size grows to
// minSize if it is smaller; touch sets its times. With durable (the new
// pieces' chunks are synced already) the slots are settled at once;
// otherwise they are marked unsettled, to be settled after the sync round
// that makes the drives written (unsynced) durable, or reverted by the
// next open after a crash.
func (m *Manager) commitLayers(ino Ino, adds []slot, minSize int64, touch, durable bool, unsynced []uint32) error {
	for start := 0; start < len(adds) || start == 0; start += m.meta.batch {
		batch := adds[start:min(start+m.meta.batch, len(adds))]
		var zero []nodes.ChunkID
		var marked []slotAddr
		err := m.committing(func(epoch uint64) error {
			m.markUnsynced(unsynced)
			err := m.meta.update(func(txn kv.Txn) error {
				zero, marked = zero[:0:0], marked[:0]
				n, err := getInode(txn, ino)
				if err != nil {
					return err
				}
				if err := countStored(txn, &n); err != nil {
					return err
				}
				preSize := n.Size
				for _, s := range batch {
					old, _, err := getSlot(txn, ino, s.Idx)
					if err != nil {
						return err
					}
					ls := append(old[:len(old):len(old)], s.Layers...)
					if !durable {
						for i := len(old); i < len(ls); i++ {
							ls[i].Unsynced = true
						}
					}
					if durable && !old.unsynced() {
						var hidden []piece
						ls, hidden = ls.settle()
						z, err := release(txn, hidden)
						if err != nil {
							return err
						}
						zero = append(zero, z...)
					} else if err := set(txn, unsettledKey(ino, s.Idx), unsettledValue(epoch, preSize)); err != nil {
						return err
					} else {
						marked = append(marked, slotAddr{ino, s.Idx})
					}
					if err := putSlot(txn, &n, s.Idx, old, ls); err != nil {
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
			if err == nil {
				// Still inside committing: the round of epoch cannot
				// start before the settler knows these slots.
				m.unsettled.add(marked, epoch)
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("commit chunks of inode %d: %w", ino, err)
		}
		m.collect(zero)
	}
	return nil
}

// unsettledValue is an unsettled marker's value: the epoch of the slot's
// last commit and the file's size before that commit. The open after a
// crash that drops the commit's layers (their chunks were lost: held in
// memory by a killed process) puts the size back too, or the file would
// end in zeros its writer never wrote.
func unsettledValue(epoch uint64, preSize int64) []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(make([]byte, 0, 16), epoch), uint64(preSize))
}

// countStored sets n.Stored from the file's slots if it is unknown (an
// inode written before it was kept), inside txn before any change.
func countStored(txn kv.Reader, n *Inode) error {
	if n.Stored >= 0 {
		return nil
	}
	n.Stored = 0
	return scan(txn, inoKey(kFile, n.Ino), false, func(_, v []byte) error {
		ls, err := decodeLayers(v)
		n.Stored += ls.storedBytes()
		return err
	})
}

// dropChunksFrom deletes every slot of ino at index from or above, in
// batches, then lowers the size to size. Until then the remaining slots
// all lie inside the old size, so no slot is ever past the end.
func (m *Manager) dropChunksFrom(ino Ino, from int64, size int64) error {
	return m.dropChunks(ino, from, -1, size)
}

// dropChunks makes slots [from, to) of ino holes (to < 0: every slot from
// on), in batches, then lowers the size to shrinkTo unless that is
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
		err := m.meta.update(func(txn kv.Txn) error {
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
			var slots []layers
			end := stop
			if end == nil {
				end = kv.PrefixEnd(prefix)
			}
			err = txn.Scan(fileChunkKey(ino, from), end, kv.ScanOptions{Limit: m.meta.batch}, func(k, v []byte) error {
				ls, err := decodeLayers(v)
				if err != nil {
					return err
				}
				keys, slots = append(keys, bytes.Clone(k)), append(slots, ls)
				return nil
			})
			if err != nil {
				return err
			}
			for i, k := range keys {
				if err := del(txn, k); err != nil {
					return err
				}
				if err := del(txn, unsettledKey(ino, chunkIndex(k, prefix))); err != nil {
					return err
				}
				z, err := release(txn, slots[i])
				if err != nil {
					return err
				}
				zero = append(zero, z...)
				n.Stored -= slots[i].storedBytes()
			}
			done = len(keys) < m.meta.batch
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

// editSlot changes slot idx of ino with edit in one transaction (an
// absent slot reads as no layers; no layers left deletes it), releasing
// the pieces edit drops. The caller's changes (zeroing, dropping lost
// pieces) need no durable data: a slot whose pieces are all durable
// is settled on the way.
func (m *Manager) editSlot(ino Ino, idx int64, edit func(layers) (layers, []piece)) error {
	var zero []nodes.ChunkID
	err := m.meta.update(func(txn kv.Txn) error {
		zero = zero[:0:0]
		n, err := getInode(txn, ino)
		if err != nil {
			return err
		}
		if err := countStored(txn, &n); err != nil {
			return err
		}
		old, _, err := getSlot(txn, ino, idx)
		if err != nil {
			return err
		}
		ls, dropped := edit(old)
		if !ls.unsynced() {
			// Every piece is durable: what nothing shows any more can go.
			var hidden []piece
			ls, hidden = ls.settle()
			dropped = append(dropped, hidden...)
		}
		if zero, err = release(txn, dropped); err != nil {
			return err
		}
		if err := putSlot(txn, &n, idx, old, ls); err != nil {
			return err
		}
		return putInode(txn, &n)
	})
	if err != nil {
		return fmt.Errorf("change chunk %d of inode %d: %w", idx, ino, err)
	}
	m.collect(zero)
	return nil
}

// truncate sets the size of a regular file. The slot the new end falls in
// is cut there (a change of its layers only, no data is rewritten) in the
// same transaction that sets the size, so no slot ever holds bytes past
// the size, also after a failure or a crash part way. Slots wholly past
// the end go afterwards, in batches; a truncation marker, set in the same
// transaction as the size, lets the next open finish that after a crash.
// Whatever the old size, the end slot is cut, so truncating again repairs
// a file an earlier version left with bytes past its end.
func (m *Manager) truncate(ctx context.Context, ino Ino, size int64) error {
	if size < 0 {
		return fmt.Errorf("truncate to %d: %w", size, ErrInvalid)
	}
	cs := int64(m.cfg.ChunkSize)
	idx, keep := size/cs, int(size%cs)
	var zero []nodes.ChunkID
	beyond := false
	err := m.meta.update(func(txn kv.Txn) error {
		zero = zero[:0:0]
		n, err := getInode(txn, ino)
		if err != nil {
			return err
		}
		if !n.IsRegular() {
			if n.IsDir() {
				return ErrIsDir
			}
			return ErrInvalid
		}
		if err := countStored(txn, &n); err != nil {
			return err
		}
		if keep > 0 {
			old, ok, err := getSlot(txn, ino, idx)
			if err != nil {
				return err
			}
			if ok && old.length() > keep {
				ls, dropped := holeIfEmpty(old.cut(keep))
				if zero, err = release(txn, dropped); err != nil {
					return err
				}
				if err := putSlot(txn, &n, idx, old, ls); err != nil {
					return err
				}
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
	if err != nil {
		return fmt.Errorf("truncate inode %d: %w", ino, err)
	}
	m.collect(zero)
	if beyond {
		return m.finishTruncate(ino)
	}
	return nil
}

// holeIfEmpty returns ls and dropped, or, when no stored piece of ls shows
// a byte (a slot of zeros), no layers and every piece dropped: a hole.
func holeIfEmpty(ls layers, dropped []piece) (layers, []piece) {
	if ls.hasData() {
		return ls, dropped
	}
	return nil, append(dropped, ls...)
}

// hasChunkFrom reports whether ino has a slot at index from or after.
func hasChunkFrom(txn kv.Reader, ino Ino, from int64) (bool, error) {
	found := false
	err := scanFrom(txn, inoKey(kFile, ino), fileChunkKey(ino, from), kv.ScanOptions{KeysOnly: true, Limit: 1}, func(_, _ []byte) error {
		found = true
		return nil
	})
	return found, err
}

// finishTruncate drops the slots of ino past its size and its truncation
// marker. It runs after a truncation and, for markers a crash left, at
// open.
func (m *Manager) finishTruncate(ino Ino) error {
	n, err := m.inode(ino)
	if errors.Is(err, ErrNotFound) {
		return m.meta.update(func(txn kv.Txn) error { return del(txn, inoKey(kTruncate, ino)) })
	}
	if err != nil {
		return err
	}
	cs := int64(m.cfg.ChunkSize)
	if err := m.dropChunks(ino, (n.Size+cs-1)/cs, -1, -1); err != nil {
		return err
	}
	return m.meta.update(func(txn kv.Txn) error { return del(txn, inoKey(kTruncate, ino)) })
}

// wantFor returns the replication factor for an inode's new chunks.
func (m *Manager) wantFor(n *Inode) int {
	if n.Replicas > 0 {
		return int(n.Replicas)
	}
	return m.cfg.Replicas
}
