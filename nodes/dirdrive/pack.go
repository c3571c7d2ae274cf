package dirdrive

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/dhdfs/dhdfs/nodes"
	"golang.org/x/sys/unix"
)

// Pack files hold the bytes of a drive's chunks; Badger holds only where
// each chunk is (see packLoc). Badger writes its value log by copying into
// a shared mapping of a sparse file, which costs a page fault and a block
// reservation per 4 KiB page, after copying every value into a buffer
// first: most of the CPU a drive spent writing. A pack is appended to with
// pwrite instead, straight from the caller's buffer.
//
// A pack is a sequence of entries, each a packHeaderSize header followed by
// the chunk's bytes; there is no file header and no padding. The header,
// little-endian:
//
//	 0  magic       uint32  packMagic
//	 4  length      uint32  bytes of data that follow
//	 8  id          [32]byte
//	40  data CRC    uint32  CRC-32C of the data
//	44  header CRC  uint32  CRC-32C of bytes 0 to 44
//
// Entries describe themselves, so a pack can be read from start to end
// without the index (Reclaim does), and an index entry can be checked
// against the entry it points at (crash recovery does). CRC-32C runs on
// the CPU's SSE4.2 instruction, far faster than the disk.
//
// Packs are numbered from 1 in the order they are made and never reuse a
// number; the newest, the active pack, takes the writes until it reaches
// the store's unit, and is then left as it is until Reclaim rewrites its
// live entries elsewhere and deletes it.
const (
	// packDir is the directory of the packs inside a drive directory.
	packDir         = "packs"
	packSuffix      = ".pack"
	packMagic       = 0x6b706864 // "dhpk"
	packHeaderSize  = 48
	maxPackDataSize = 1<<32 - 1
)

// errBadEntry means that the bytes where a pack entry should be are not
// one: torn by a crash, never written, or damaged.
var errBadEntry = errors.New("no valid pack entry")

// packHeader is the decoded header of a pack entry.
type packHeader struct {
	id   nodes.ChunkID
	size uint32 // bytes of data
	crc  uint32 // CRC-32C of the data
}

func (h packHeader) encode(b []byte) {
	binary.LittleEndian.PutUint32(b[0:], packMagic)
	binary.LittleEndian.PutUint32(b[4:], h.size)
	copy(b[8:40], h.id[:])
	binary.LittleEndian.PutUint32(b[40:], h.crc)
	binary.LittleEndian.PutUint32(b[44:], nodes.CRC32C(b[:44]))
}

func decodePackHeader(b []byte) (packHeader, error) {
	var h packHeader
	if len(b) < packHeaderSize || binary.LittleEndian.Uint32(b) != packMagic ||
		binary.LittleEndian.Uint32(b[44:]) != nodes.CRC32C(b[:44]) {
		return h, errBadEntry
	}
	h.size = binary.LittleEndian.Uint32(b[4:])
	copy(h.id[:], b[8:40])
	h.crc = binary.LittleEndian.Uint32(b[40:])
	return h, nil
}

// packLoc is where a chunk sits in the packs: the index value of a chunk
// stored in a pack (Badger entry with UserMeta metaPacked). Encoded as 16
// bytes, little-endian: pack uint32, offset of the entry's header uint64,
// length of the data uint32.
type packLoc struct {
	pack uint32
	off  int64
	size int64
}

const packLocSize = 16

func (l packLoc) encode() []byte {
	b := make([]byte, packLocSize)
	binary.LittleEndian.PutUint32(b[0:], l.pack)
	binary.LittleEndian.PutUint64(b[4:], uint64(l.off))
	binary.LittleEndian.PutUint32(b[12:], uint32(l.size))
	return b
}

func decodePackLoc(b []byte) (packLoc, error) {
	if len(b) != packLocSize {
		return packLoc{}, fmt.Errorf("pack location of %d bytes, want %d", len(b), packLocSize)
	}
	return packLoc{
		pack: binary.LittleEndian.Uint32(b[0:]),
		off:  int64(binary.LittleEndian.Uint64(b[4:])),
		size: int64(binary.LittleEndian.Uint32(b[12:])),
	}, nil
}

// pos returns where the entry starts.
func (l packLoc) pos() packPos { return packPos{l.pack, l.off} }

// entrySize returns the bytes the entry takes in its pack.
func (l packLoc) entrySize() int64 { return packHeaderSize + l.size }

// packPos is a place in the sequence of all packs: pack number, then
// offset.
type packPos struct {
	pack uint32
	off  int64
}

func (a packPos) less(b packPos) bool {
	return a.pack < b.pack || a.pack == b.pack && a.off < b.off
}

// pack is one open pack file.
type pack struct {
	num uint32
	f   *os.File
	// direct is f opened again with O_DIRECT, for the data of large
	// entries (writeDirect); nil until the first. Guarded by packSet.mu.
	direct *os.File
	// size is where the next entry goes: the bytes reserved so far, written
	// or still being written. Guarded by packSet.mu.
	size int64
	// live is the bytes of the entries (headers included) the index points
	// at; see BadgerStore.countLive.
	live atomic.Int64
}

// packSet is the packs of one store.
type packSet struct {
	dir  string
	unit int64

	// syncMu serialises flush and the removal of packs, so that a flush
	// never syncs a pack Reclaim closed under it, nor reports durable what
	// an earlier flush is still syncing.
	syncMu sync.Mutex

	mu sync.Mutex
	// idle is signalled (on mu) when a write ends, for waitWrites.
	idle  *sync.Cond
	files map[uint32]*pack // guarded by mu
	// active takes new entries; nil means the next write starts a new
	// pack. Guarded by mu.
	active *pack
	// last is the highest pack number used so far. Guarded by mu.
	last uint32
	// writing counts, by start, the entries reserved and not yet written
	// (or failed). Guarded by mu.
	writing map[packPos]int
	// dirty holds the packs written since the last flush, and made tells
	// whether a pack file was created since (the directory needs a sync
	// then). Guarded by mu.
	dirty map[uint32]*pack
	made  bool
	// noDirect is set once the filesystem refused O_DIRECT: every write
	// goes through the page cache then.
	noDirect atomic.Bool
}

func packName(num uint32) string { return fmt.Sprintf("%08d%s", num, packSuffix) }

// openPacks opens the packs in dir, creating dir if needed. No pack is
// active: resume or the first write chooses.
func openPacks(dir string, unit int64) (*packSet, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("open packs: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("open packs: %w", err)
	}
	ps := &packSet{dir: dir, unit: unit, files: map[uint32]*pack{}, writing: map[packPos]int{}, dirty: map[uint32]*pack{}}
	ps.idle = sync.NewCond(&ps.mu)
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), packSuffix)
		if !ok || e.IsDir() {
			continue
		}
		n, err := strconv.ParseUint(name, 10, 32)
		if err != nil || n == 0 {
			continue
		}
		f, err := os.OpenFile(filepath.Join(dir, e.Name()), os.O_RDWR, 0)
		if err != nil {
			ps.close()
			return nil, fmt.Errorf("open packs: %w", err)
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			ps.close()
			return nil, fmt.Errorf("open packs: %w", err)
		}
		p := &pack{num: uint32(n), f: f, size: st.Size()}
		ps.files[p.num] = p
		ps.last = max(ps.last, p.num)
	}
	return ps, nil
}

// resume makes the newest pack the active one again if it has room, after
// a clean close: its size is then exactly the end of its last entry.
func (ps *packSet) resume() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if p := ps.files[ps.last]; p != nil && p.size < ps.unit {
		ps.active = p
	}
}

// get returns pack num, or nil.
func (ps *packSet) get(num uint32) *pack {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.files[num]
}

// list returns the open packs.
func (ps *packSet) list() []*pack {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	out := make([]*pack, 0, len(ps.files))
	for _, p := range ps.files {
		out = append(out, p)
	}
	return out
}

// reserve sets aside room for an entry of size bytes of data at the end
// of the active pack, starting a new pack if the active one would grow
// past the unit (an entry bigger than the unit gets a pack of its own).
// With aligned, the entry's data starts at a multiple of directAlign, and
// the gap before its header, if any, is left for a padding entry. It
// returns the start of the reserved bytes and where the entry's header
// goes. The caller writes them and then calls written(p, start). Only
// this is serialised: the writes themselves run in parallel.
func (ps *packSet) reserve(size int64, aligned bool) (p *pack, start, off int64, err error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	n := packHeaderSize + size
	if aligned {
		n += directAlign + packHeaderSize // the most padding can take
	}
	if p := ps.active; p == nil || p.size > 0 && p.size+n > ps.unit {
		if err := ps.roll(); err != nil {
			return nil, 0, 0, err
		}
	}
	p = ps.active
	start, off = p.size, p.size
	if aligned {
		off = padTo(start)
	}
	p.size = off + packHeaderSize + size
	ps.writing[packPos{p.num, start}]++
	return p, start, off, nil
}

// padTo returns where the header of an entry whose data is to start at a
// multiple of directAlign goes, at start or after it: far enough that a
// padding entry (a header at least) fits in the gap when there is one.
func padTo(start int64) int64 {
	data := (start + packHeaderSize + directAlign - 1) / directAlign * directAlign
	if gap := data - packHeaderSize - start; gap > 0 && gap < packHeaderSize {
		data += directAlign
	}
	return data - packHeaderSize
}

// roll starts a new active pack. The caller holds mu.
func (ps *packSet) roll() error {
	num := ps.last + 1
	f, err := os.OpenFile(filepath.Join(ps.dir, packName(num)), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("start pack: %w", err)
	}
	p := &pack{num: num, f: f}
	ps.files[num], ps.active, ps.last, ps.made = p, p, num, true
	return nil
}

// rotate ends the active pack, so that Reclaim may rewrite it.
func (ps *packSet) rotate() {
	ps.mu.Lock()
	ps.active = nil
	ps.mu.Unlock()
}

// written ends the write of the entry reserved at off in p.
func (ps *packSet) written(p *pack, off int64) {
	ps.mu.Lock()
	at := packPos{p.num, off}
	if ps.writing[at]--; ps.writing[at] <= 0 {
		delete(ps.writing, at)
	}
	ps.dirty[p.num] = p
	ps.mu.Unlock()
	ps.idle.Broadcast()
}

// waitWrites waits until no write into p is under way. Once p is no longer
// active no new one starts, so every entry of p can then be read.
func (ps *packSet) waitWrites(p *pack) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for {
		busy := false
		for at := range ps.writing {
			if at.pack == p.num {
				busy = true
				break
			}
		}
		if !busy {
			return
		}
		ps.idle.Wait()
	}
}

// append writes an entry for id holding data to the active pack and
// returns where it is. The header and data go in two pwrites, straight
// from data: one more system call per chunk is cheaper than copying the
// chunk behind its header. Large chunks bypass the page cache (see
// writeDirect).
func (ps *packSet) append(id nodes.ChunkID, data []byte) (packLoc, error) {
	if len(data) > maxPackDataSize {
		return packLoc{}, fmt.Errorf("chunk of %d bytes is too big for a pack", len(data))
	}
	hdr := make([]byte, packHeaderSize, packHeaderSize+directAlign)
	packHeader{id: id, size: uint32(len(data)), crc: nodes.ChunkCRC(id, data)}.encode(hdr)
	direct := ps.directable(data)
	p, start, off, err := ps.reserve(int64(len(data)), direct)
	if err != nil {
		return packLoc{}, err
	}
	if off > start {
		// The gap before the header becomes a padding entry, written with
		// the header: Reclaim steps over it as over any entry no index
		// names.
		hdr = append(padEntry(off-start), hdr...)
	}
	_, err = p.f.WriteAt(hdr, start)
	if err == nil {
		err = ps.writeData(p, data, off+packHeaderSize, direct)
	}
	ps.written(p, start)
	if err != nil {
		// The reserved bytes stay behind as a hole or a torn entry: dead
		// space, which Reclaim steps over (see reclaimPack).
		return packLoc{}, fmt.Errorf("write pack %d: %w", p.num, err)
	}
	return packLoc{pack: p.num, off: off, size: int64(len(data))}, nil
}

// padEntry returns a padding entry of n bytes (at least a header): a
// header for the zero id, which no chunk has, and zeros.
func padEntry(n int64) []byte {
	b := make([]byte, n)
	packHeader{size: uint32(n - packHeaderSize), crc: nodes.CRC32C(b[packHeaderSize:])}.encode(b)
	return b
}

// Writes of large chunks bypass the page cache. A buffered pwrite of a
// chunk cost the kernel far more than the copy: page allocation, dirty
// accounting and writeback of 256 pages per MiB, twice per chunk with two
// copies. Measured, 1 GiB in 1 MiB writes and an fdatasync: 0.7–2.8 s of
// CPU buffered, 0.11–0.13 s with O_DIRECT, in less time. Such an entry's
// data starts at a multiple of directAlign (a padding entry fills the gap
// before its header) and all of it but the last partial block is written
// with O_DIRECT, straight from the caller's buffer when that is aligned in
// memory (chunk buffers are: Go gives large allocations whole pages).
// The padding costs up to 4 KiB an entry, 0.4% of a 1 MiB chunk, which is
// why smaller chunks stay buffered.
// Reads stay buffered: O_DIRECT writes drop the pages they cover from the
// cache, so no reader sees stale bytes. Durability is unchanged: the
// drive's cache is flushed, and the file's size and extents committed, by
// the fdatasync of the next flush.
const (
	directAlign = 4096      // a multiple of every logical block size in use
	directMin   = 256 << 10 // smaller chunks are written through the page cache
)

// directable reports whether data is written with O_DIRECT.
func (ps *packSet) directable(data []byte) bool {
	return len(data) >= directMin && uintptr(unsafe.Pointer(unsafe.SliceData(data)))%directAlign == 0 && !ps.noDirect.Load()
}

// writeData writes an entry's data at off in p: with direct, the aligned
// part with O_DIRECT and the rest through the page cache.
func (ps *packSet) writeData(p *pack, data []byte, off int64, direct bool) error {
	if direct {
		n := len(data) / directAlign * directAlign
		if ok, err := ps.writeDirect(p, data[:n], off); err != nil {
			return err
		} else if ok {
			data, off = data[n:], off+int64(n)
		}
	}
	if len(data) == 0 {
		return nil
	}
	_, err := p.f.WriteAt(data, off)
	return err
}

// writeDirect writes data at off in p with O_DIRECT, and reports whether
// it did: false, with no error, when the filesystem refuses O_DIRECT
// (every later write then goes through the page cache).
func (ps *packSet) writeDirect(p *pack, data []byte, off int64) (bool, error) {
	ps.mu.Lock()
	df, err := p.direct, error(nil)
	if df == nil {
		df, err = os.OpenFile(p.f.Name(), os.O_WRONLY|unix.O_DIRECT, 0)
		p.direct = df
	}
	ps.mu.Unlock()
	if err != nil {
		// This write goes through the page cache; so do all later ones
		// if the filesystem has no O_DIRECT.
		if errors.Is(err, unix.EINVAL) {
			ps.noDirect.Store(true)
		}
		return false, nil
	}
	if _, err := df.WriteAt(data, off); errors.Is(err, unix.EINVAL) {
		ps.noDirect.Store(true)
		return false, nil
	} else if err != nil {
		return false, err
	}
	return true, nil
}

// syncPoint returns the position below which every reserved write has
// ended, and takes the packs written since the last call. The caller
// holds syncMu.
func (ps *packSet) syncPoint() (packPos, []*pack, bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	at := packPos{ps.last + 1, 0}
	if p := ps.active; p != nil {
		at = packPos{p.num, p.size}
	}
	for w := range ps.writing {
		if w.less(at) {
			at = w
		}
	}
	dirty := make([]*pack, 0, len(ps.dirty))
	for _, p := range ps.dirty {
		dirty = append(dirty, p)
	}
	clear(ps.dirty)
	made := ps.made
	ps.made = false
	return at, dirty, made
}

// flush makes every write that ended before it was called durable, and
// returns the sync point: a position below which every entry is on
// stable storage.
func (ps *packSet) flush() (packPos, error) {
	ps.syncMu.Lock()
	defer ps.syncMu.Unlock()
	at, dirty, made := ps.syncPoint()
	var err error
	for i, p := range dirty {
		if err = p.datasync(); err != nil {
			ps.redirty(dirty[i:], made)
			return at, fmt.Errorf("sync pack %d: %w", p.num, err)
		}
	}
	if made {
		if err = nodes.SyncDir(ps.dir); err != nil {
			ps.redirty(nil, made)
		}
	}
	return at, err
}

// redirty puts back what a failed flush took, for the next one to retry.
func (ps *packSet) redirty(packs []*pack, made bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, p := range packs {
		if ps.files[p.num] == p {
			ps.dirty[p.num] = p
		}
	}
	ps.made = ps.made || made
}

// datasync runs fdatasync on the pack: its data and size, not its times.
func (p *pack) datasync() error {
	rc, err := p.f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fdatasync(int(fd)) }); err != nil {
		return err
	}
	return serr
}

// remove closes and deletes pack p. The caller has moved every live entry
// out of it and made that durable. The directory is not synced: a pack
// that comes back after a crash holds nothing the index points at, and is
// reclaimed again.
func (ps *packSet) remove(p *pack) error {
	ps.syncMu.Lock()
	defer ps.syncMu.Unlock()
	ps.mu.Lock()
	if ps.active == p {
		ps.active = nil
	}
	delete(ps.files, p.num)
	delete(ps.dirty, p.num)
	p.close()
	ps.mu.Unlock()
	if err := os.Remove(filepath.Join(ps.dir, packName(p.num))); err != nil {
		return fmt.Errorf("delete pack %d: %w", p.num, err)
	}
	return nil
}

// close closes every pack file.
func (ps *packSet) close() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, p := range ps.files {
		p.close()
	}
	ps.active = nil
}

// close closes the pack's files.
func (p *pack) close() {
	p.f.Close()
	if p.direct != nil {
		p.direct.Close()
	}
}

// errPackGone means a pack was deleted (Reclaim moved its entries) under a
// reader, which then looks the chunk up again.
var errPackGone = errors.New("pack deleted")

// read returns n bytes of the data of the entry at loc from offset off,
// appended to buf[:0]. It reads only those bytes.
func (ps *packSet) read(loc packLoc, off, n int, buf []byte) ([]byte, error) {
	p := ps.get(loc.pack)
	if p == nil {
		return nil, errPackGone
	}
	if off < 0 || int64(off) >= loc.size || n <= 0 {
		return buf[:0], nil
	}
	n = int(min(int64(n), loc.size-int64(off)))
	buf = growLen(buf, n)
	_, err := p.f.ReadAt(buf, loc.off+packHeaderSize+int64(off))
	switch {
	case errors.Is(err, os.ErrClosed):
		return nil, errPackGone
	case errors.Is(err, io.EOF):
		return nil, fmt.Errorf("pack %d ends before the chunk at %d: %w", loc.pack, loc.off, errBadEntry)
	case err != nil:
		return nil, fmt.Errorf("read pack %d: %w", loc.pack, err)
	}
	return buf, nil
}

// growLen returns buf[:n], reallocated if its capacity is short.
func growLen(buf []byte, n int) []byte {
	if cap(buf) < n {
		return make([]byte, n)
	}
	return buf[:n]
}

// readHeader reads and checks the header of the entry at off in p. It
// returns an error wrapping errBadEntry if there is none there.
func (p *pack) readHeader(off int64) (packHeader, error) {
	var b [packHeaderSize]byte
	if _, err := p.f.ReadAt(b[:], off); errors.Is(err, io.EOF) {
		return packHeader{}, fmt.Errorf("pack %d ends at a header at %d: %w", p.num, off, errBadEntry)
	} else if err != nil {
		return packHeader{}, fmt.Errorf("read pack %d: %w", p.num, err)
	}
	h, err := decodePackHeader(b[:])
	if err != nil {
		return h, fmt.Errorf("pack %d at %d: %w", p.num, off, err)
	}
	return h, nil
}

// readEntry reads the entry at off in p into buf and checks it against its
// header. The data is returned even when only its CRC is wrong, with an
// error wrapping errBadEntry.
func (p *pack) readEntry(off int64, buf []byte) (packHeader, []byte, error) {
	h, err := p.readHeader(off)
	if err != nil {
		return h, nil, err
	}
	buf = growLen(buf, int(h.size))
	if _, err := p.f.ReadAt(buf, off+packHeaderSize); errors.Is(err, io.EOF) {
		return h, nil, fmt.Errorf("pack %d ends inside the entry at %d: %w", p.num, off, errBadEntry)
	} else if err != nil {
		return h, nil, fmt.Errorf("read pack %d: %w", p.num, err)
	}
	if nodes.CRC32C(buf) != h.crc {
		return h, buf, fmt.Errorf("pack %d at %d: data CRC mismatch: %w", p.num, off, errBadEntry)
	}
	return h, buf, nil
}
