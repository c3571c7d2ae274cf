package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"syscall"
	"time"

	"github.com/dhdfs/dhdfs/nodes"
)

// Ino is an inode number. Inode numbers are never reused: hard-link
// detection (rsync -aH, tar) depends on it.
type Ino uint64

// RootIno is the inode number of the pool's root directory.
const RootIno Ino = 1

// Inode is a file, directory or symlink's attributes.
type Inode struct {
	Ino   Ino
	Mode  uint32 // file type bits (syscall.S_IF*) and permissions
	Uid   uint32
	Gid   uint32
	Nlink uint32
	Size  int64
	Atime int64 // Unix nanoseconds
	Mtime int64
	Ctime int64
	// Replicas is the replication factor set on this inode; 0 inherits the
	// pool default. New children copy their directory's value.
	Replicas uint8
	// Parent is a directory's parent (itself for the root), so that rename
	// can refuse to move a directory into its own subtree. Zero otherwise.
	Parent Ino
	// Target is a symlink's target.
	Target string
	// Rdev is a device node's device number (Linux encoding, as in
	// st_rdev); zero for other files.
	Rdev uint32
	// Btime is when the inode was created (statx's birth time), Unix
	// nanoseconds; zero when unknown (inodes from before it was kept).
	Btime int64
	// Stored is how many bytes of the file's content are stored in chunks,
	// holes and zero tails not counted (st_blocks). Negative when unknown
	// (inodes from before it was kept): the next commit to the file counts
	// it afresh.
	Stored int64
}

// IsDir reports whether the inode is a directory.
func (i *Inode) IsDir() bool { return i.Mode&syscall.S_IFMT == syscall.S_IFDIR }

// IsRegular reports whether the inode is a regular file.
func (i *Inode) IsRegular() bool { return i.Mode&syscall.S_IFMT == syscall.S_IFREG }

// IsSymlink reports whether the inode is a symbolic link.
func (i *Inode) IsSymlink() bool { return i.Mode&syscall.S_IFMT == syscall.S_IFLNK }

// MtimeTime returns Mtime as a time.Time.
func (i *Inode) MtimeTime() time.Time { return time.Unix(0, i.Mtime) }

// errCorrupt marks a metadata record that does not decode.
var errCorrupt = errors.New("corrupt metadata record")

const recordVersion = 1

// inodeVersion is the version of inode records: 2 added Rdev, Btime and
// Stored after version 1's fields. Version 1 records still decode.
const inodeVersion = 2

func (i *Inode) encode() []byte {
	b := make([]byte, 0, 80+len(i.Target))
	b = append(b, inodeVersion)
	b = binary.AppendUvarint(b, uint64(i.Mode))
	b = binary.AppendUvarint(b, uint64(i.Uid))
	b = binary.AppendUvarint(b, uint64(i.Gid))
	b = binary.AppendUvarint(b, uint64(i.Nlink))
	b = binary.AppendVarint(b, i.Size)
	b = binary.AppendVarint(b, i.Atime)
	b = binary.AppendVarint(b, i.Mtime)
	b = binary.AppendVarint(b, i.Ctime)
	b = append(b, i.Replicas)
	b = binary.AppendUvarint(b, uint64(i.Parent))
	b = binary.AppendUvarint(b, uint64(len(i.Target)))
	b = append(b, i.Target...)
	b = binary.AppendUvarint(b, uint64(i.Rdev))
	b = binary.AppendVarint(b, i.Btime)
	return binary.AppendVarint(b, i.Stored)
}

// decoder reads the fields of a record, remembering the first error so that
// callers check once at the end.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errCorrupt
	}
	d.b = nil
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) u32() uint32 {
	v := d.uvarint()
	if v > 1<<32-1 {
		d.fail()
	}
	return uint32(v)
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte1() byte {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) bytes(n uint64) []byte {
	if uint64(len(d.b)) < n {
		d.fail()
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) version() {
	if d.byte1() != recordVersion {
		d.fail()
	}
}

func (d *decoder) done(what string) error {
	if d.err == nil && len(d.b) != 0 {
		d.err = errCorrupt
	}
	if d.err != nil {
		return fmt.Errorf("decode %s: %w", what, d.err)
	}
	return nil
}

func decodeInode(ino Ino, b []byte) (Inode, error) {
	d := decoder{b: b}
	v := d.byte1()
	if v != recordVersion && v != inodeVersion {
		d.fail()
	}
	i := Inode{Ino: ino, Stored: -1}
	i.Mode = d.u32()
	i.Uid = d.u32()
	i.Gid = d.u32()
	i.Nlink = d.u32()
	i.Size = d.varint()
	i.Atime = d.varint()
	i.Mtime = d.varint()
	i.Ctime = d.varint()
	i.Replicas = d.byte1()
	i.Parent = Ino(d.uvarint())
	i.Target = string(d.bytes(d.uvarint()))
	if v == inodeVersion {
		i.Rdev = d.u32()
		i.Btime = d.varint()
		i.Stored = d.varint()
	}
	if err := d.done("inode"); err != nil {
		return Inode{}, err
	}
	if i.Size < 0 {
		return Inode{}, fmt.Errorf("decode inode %d: negative size: %w", ino, errCorrupt)
	}
	return i, nil
}

// dentry is a directory entry's value: the child and its file type, so
// readdir needs no inode reads.
type dentry struct {
	Ino  Ino
	Type uint32 // syscall.S_IF* bits only
}

func (e dentry) encode() []byte {
	b := binary.AppendUvarint([]byte{recordVersion}, uint64(e.Ino))
	return binary.AppendUvarint(b, uint64(e.Type))
}

func decodeDentry(b []byte) (dentry, error) {
	d := decoder{b: b}
	d.version()
	e := dentry{Ino: Ino(d.uvarint()), Type: d.u32()}
	return e, d.done("directory entry")
}

// ChunkRef is one chunk of a file: its id and its length in bytes.
type ChunkRef struct {
	ID   nodes.ChunkID
	Size int
}

func (r ChunkRef) encode() []byte {
	b := make([]byte, 0, 1+len(r.ID)+5)
	b = append(b, recordVersion)
	b = append(b, r.ID[:]...)
	return binary.AppendUvarint(b, uint64(r.Size))
}

func decodeChunkRef(b []byte) (ChunkRef, error) {
	d := decoder{b: b}
	d.version()
	var r ChunkRef
	copy(r.ID[:], d.bytes(uint64(len(r.ID))))
	sz := d.uvarint()
	if sz > MaxChunkSize {
		d.fail()
	}
	r.Size = int(sz)
	return r, d.done("file chunk")
}

// chunkRecord is what the pool knows of one stored chunk.
type chunkRecord struct {
	Size int
	// Refs counts the file chunk slots that point at the chunk, plus writes
	// in flight that will. At zero the chunk is garbage.
	Refs uint64
	// Want is the largest replication factor any referencing file asked for.
	Want uint8
	// Holders are the numbers of the drives holding a copy.
	Holders []uint32
	// Sums are the CRC-32C of each VerifyBlock bytes of the chunk, so that a
	// small read can fetch and verify one block instead of the chunk.
	Sums []uint32
}

// VerifyBlock is the unit of partial chunk reads and their checksums.
const VerifyBlock = 64 << 10

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// blockSums returns the CRC-32C of each VerifyBlock of data.
func blockSums(data []byte) []uint32 {
	sums := make([]uint32, 0, (len(data)+VerifyBlock-1)/VerifyBlock)
	for off := 0; off < len(data); off += VerifyBlock {
		sums = append(sums, crc32.Checksum(data[off:min(off+VerifyBlock, len(data))], castagnoli))
	}
	return sums
}

func (c *chunkRecord) encode() []byte {
	b := make([]byte, 0, 16+4*len(c.Holders))
	b = append(b, recordVersion)
	b = binary.AppendUvarint(b, uint64(c.Size))
	b = binary.AppendUvarint(b, c.Refs)
	b = append(b, c.Want)
	b = binary.AppendUvarint(b, uint64(len(c.Holders)))
	for _, h := range c.Holders {
		b = binary.AppendUvarint(b, uint64(h))
	}
	b = binary.AppendUvarint(b, uint64(len(c.Sums)))
	for _, s := range c.Sums {
		b = binary.BigEndian.AppendUint32(b, s)
	}
	return b
}

func decodeChunkRecord(b []byte) (chunkRecord, error) {
	d := decoder{b: b}
	d.version()
	var c chunkRecord
	sz := d.uvarint()
	if sz > MaxChunkSize {
		d.fail()
	}
	c.Size = int(sz)
	c.Refs = d.uvarint()
	c.Want = d.byte1()
	n := d.uvarint()
	if n > 1024 {
		d.fail()
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		c.Holders = append(c.Holders, d.u32())
	}
	ns := d.uvarint()
	if ns != uint64((c.Size+VerifyBlock-1)/VerifyBlock) && ns != 0 {
		d.fail()
	}
	for i := uint64(0); i < ns && d.err == nil; i++ {
		if b4 := d.bytes(4); len(b4) == 4 {
			c.Sums = append(c.Sums, binary.BigEndian.Uint32(b4))
		}
	}
	return c, d.done("chunk record")
}

func (c *chunkRecord) holds(num uint32) bool {
	for _, h := range c.Holders {
		if h == num {
			return true
		}
	}
	return false
}
