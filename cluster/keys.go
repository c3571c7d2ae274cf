package cluster

import (
	"encoding/binary"

	"github.com/dhdfs/dhdfs/nodes"
)

// Key layout of the metadata, every kind of key in one place: one byte of
// kind, then big-endian numbers, so that a prefix scan walks a directory
// or a file's slots in order.
//
//	i ino                 → Inode
//	e parent name         → dentry
//	f ino index           → the slot's layers (layers.go; absent: a hole)
//	k chunk               → chunkRecord
//	r drive chunk         → (empty) reverse index: what a drive holds
//	z chunk               → (empty) chunk whose Refs fell to zero
//	o ino                 → (empty) inode with no name, still to be freed
//	t ino                 → (empty) truncation under way: chunks past the size may remain
//	u ino index           → epoch: slot committed in that sync round, not settled yet (slots.go)
//	p drive chunk         → (empty) a copy no record names, to delete from the drive (pending_delete.go)
//	x ino name            → extended attribute value (xattr.go)
//	d drive               → DriveRecord (JSON)
//	s name                → counters and flags: the last inode number (i),
//	                        inodes in use (n), the last drive number (d),
//	                        the last write transaction (q, metalog.go),
//	                        present while closed cleanly (c, crash_recovery.go)
const (
	kInode     = 'i'
	kDentry    = 'e'
	kFile      = 'f'
	kChunk     = 'k'
	kHolding   = 'r'
	kZero      = 'z'
	kOrphan    = 'o'
	kTruncate  = 't'
	kUnsettled = 'u'
	kPending   = 'p'
	kDrive     = 'd'
	kCounter   = 's'
	kXattr     = 'x'
)

func inoKey(kind byte, ino Ino) []byte {
	return binary.BigEndian.AppendUint64([]byte{kind}, uint64(ino))
}

func dentryKey(parent Ino, name string) []byte {
	return append(inoKey(kDentry, parent), name...)
}

func fileChunkKey(ino Ino, idx int64) []byte {
	return binary.BigEndian.AppendUint64(inoKey(kFile, ino), uint64(idx))
}

// chunkIndex returns the chunk index of a file chunk key under prefix
// (inoKey(kFile, ino)).
func chunkIndex(key, prefix []byte) int64 {
	return int64(binary.BigEndian.Uint64(key[len(prefix):]))
}

func chunkKey(kind byte, id nodes.ChunkID) []byte {
	return append([]byte{kind}, id[:]...)
}

func driveKey(num uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{kDrive}, num)
}

func holdingPrefix(num uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{kHolding}, num)
}

func holdingKey(num uint32, id nodes.ChunkID) []byte {
	return append(holdingPrefix(num), id[:]...)
}

var (
	inoCounterKey   = []byte{kCounter, 'i'} // the last inode number given out
	inodeCountKey   = []byte{kCounter, 'n'} // inodes that exist (df -i)
	driveCounterKey = []byte{kCounter, 'd'}
	metaSeqKey      = []byte{kCounter, 'q'} // the number of the last write transaction (metalog.go)
)

// cleanKey is present while the pool is closed cleanly.
var cleanKey = []byte{kCounter, 'c'}

func unsettledKey(ino Ino, idx int64) []byte {
	return binary.BigEndian.AppendUint64(inoKey(kUnsettled, ino), uint64(idx))
}

func xattrKey(ino Ino, name string) []byte { return append(inoKey(kXattr, ino), name...) }

func pendingPrefix(num uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{kPending}, num)
}

func pendingKey(num uint32, id nodes.ChunkID) []byte {
	return append(pendingPrefix(num), id[:]...)
}

// parsePendingKey splits a pending key into drive number and chunk.
func parsePendingKey(k []byte) (uint32, nodes.ChunkID, bool) {
	var id nodes.ChunkID
	if len(k) != 5+len(id) || k[0] != kPending {
		return 0, id, false
	}
	copy(id[:], k[5:])
	return binary.BigEndian.Uint32(k[1:5]), id, true
}
