package nodes

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Journal is a drive's intent log: records made durable with one write
// and one flush each, for what must survive a crash before the drive's
// store (and the pool's metadata) are next synced. A synchronous write
// then costs one flush per drive instead of one per file a store keeps.
//
// Records are grouped in generations, one file each: Rotate starts a new
// generation, Drop deletes old ones once what they hold is durable
// elsewhere, and Replay reads every record of the generations left. A
// record torn by a crash, and everything after it in its file, is not
// replayed. A journal opened after a restart starts a new generation, so
// it never appends after a torn tail.
type Journal struct {
	dir string
	// dev is the device of a filesystem whose fdatasync always ends
	// with a cache flush of the whole device (shareFlush); 0 if not.
	dev uint64

	mu      sync.Mutex
	gen     uint64   // guarded by mu: the generation appended to
	f       *os.File // guarded by mu: its file
	off     int64    // guarded by mu: where the next record goes
	size    int64    // guarded by mu: the file's size
	durable int64    // guarded by mu: how much of that size a flush made durable
}

// JournalDir is the journal's directory inside a drive directory.
const JournalDir = "journal"

const (
	journalSuffix = ".jnl"
	// A spare (GEN.free) is a dropped generation's file kept for the next one. A
	// record appended inside a file's existing blocks needs no metadata
	// change, so its fdatasync is one data write and a cache flush, not
	// a filesystem journal commit as well (the trick of RocksDB's
	// recycle_log_file_num).
	spareSuffix = ".free"
	// recordMagic1 records (CRC of the payload alone) come from dhdfs
	// versions that never recycled files; they are still replayed.
	recordMagic1 = 0x6a726e31 // "jrn1"
	// recordMagic records carry a CRC of the generation and the payload,
	// so that the records a recycled file still holds past the new tail,
	// from an older generation, fail their check and end the replay.
	recordMagic  = 0x6a726e32 // "jrn2"
	recordHeader = 12         // magic, length, CRC-32C
	maxRecord    = 1 << 30
	// A record that would end past its file's end grows the file to the
	// next multiple of journalGrow with zeros, so that the records after
	// it overwrite blocks already allocated and sized: their fdatasync
	// then has no metadata to commit, and journals on one device can
	// share its flush (AppendAll). Zeros end a replay like a torn record.
	journalGrow = 1 << 20
)

// OpenJournal opens the journal in drive directory dir, creating it if
// needed, and starts a new generation after the ones present.
func OpenJournal(dir string) (*Journal, error) {
	j := &Journal{dir: filepath.Join(dir, JournalDir)}
	if err := os.MkdirAll(j.dir, 0o700); err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	j.dev = flushDevice(j.dir)
	gens, err := j.generations()
	if err != nil {
		return nil, err
	}
	next := uint64(1)
	if len(gens) > 0 {
		next = gens[len(gens)-1] + 1
	}
	// The spare's name keeps its generation, so that numbers are never
	// reused even when no other file is left.
	if g, ok := j.spare(); ok {
		next = max(next, g+1)
	}
	if err := j.start(next); err != nil {
		return nil, err
	}
	return j, nil
}

func (j *Journal) path(gen uint64) string {
	return filepath.Join(j.dir, fmt.Sprintf("%016x%s", gen, journalSuffix))
}

// generations lists the generations on disk, oldest first.
func (j *Journal) generations() ([]uint64, error) {
	return j.list(journalSuffix)
}

// spare returns the generation of the spare file, if there is one.
func (j *Journal) spare() (uint64, bool) {
	gens, err := j.list(spareSuffix)
	if err != nil || len(gens) == 0 {
		return 0, false
	}
	return gens[len(gens)-1], true
}

func (j *Journal) sparePath(gen uint64) string {
	return filepath.Join(j.dir, fmt.Sprintf("%016x%s", gen, spareSuffix))
}

// list returns the generations of the files named GEN+suffix, sorted.
func (j *Journal) list(suffix string) ([]uint64, error) {
	entries, err := os.ReadDir(j.dir)
	if err != nil {
		return nil, fmt.Errorf("read journal: %w", err)
	}
	var gens []uint64
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), suffix)
		if !ok {
			continue
		}
		if g, err := strconv.ParseUint(name, 16, 64); err == nil {
			gens = append(gens, g)
		}
	}
	slices.Sort(gens)
	return gens, nil
}

// start makes gen the generation appended to. j.mu is held (or j is new).
func (j *Journal) start(gen uint64) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if g, ok := j.spare(); ok && g < gen {
		if err := os.Rename(j.sparePath(g), j.path(gen)); err == nil {
			flags &^= os.O_TRUNC
		}
	}
	f, err := os.OpenFile(j.path(gen), flags, 0o600)
	if err != nil {
		return fmt.Errorf("start journal generation: %w", err)
	}
	fail := func(err error) error {
		f.Close()
		return fmt.Errorf("start journal generation: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	// A recycled file's size is known durable only after a flush: its
	// last writer may have crashed between growing it and syncing.
	if st.Size() > 0 {
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			return fail(err)
		}
	}
	// The new name must survive a crash too, or its records are lost
	// with it.
	if err := syncDir(j.dir); err != nil {
		return fail(err)
	}
	if j.f != nil {
		j.f.Close()
	}
	j.gen, j.f, j.off, j.size, j.durable = gen, f, 0, st.Size(), st.Size()
	return nil
}

// Append writes rec as one record and makes it durable before returning.
func (j *Journal) Append(rec []byte) error {
	b, err := frame(rec)
	if err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.write(b); err != nil {
		return err
	}
	// Only the data and the file's size matter: fdatasync, not fsync.
	if err := j.flush(); err != nil {
		return err
	}
	j.off += int64(len(b))
	return nil
}

// frame returns rec behind a record header whose CRC write fills in.
func frame(rec []byte) ([]byte, error) {
	if len(rec) > maxRecord {
		return nil, fmt.Errorf("journal record of %d bytes: too large", len(rec))
	}
	b := make([]byte, recordHeader, recordHeader+len(rec))
	binary.LittleEndian.PutUint32(b[0:], recordMagic)
	binary.LittleEndian.PutUint32(b[4:], uint32(len(rec)))
	return append(b, rec...), nil
}

// write puts framed record b at the tail, growing the file with zeros
// when b would end past it, without making it durable. j.mu is held.
func (j *Journal) write(b []byte) error {
	if j.f == nil {
		return ErrClosed
	}
	binary.LittleEndian.PutUint32(b[8:], recordSum(j.gen, b[recordHeader:]))
	end := j.off + int64(len(b))
	rec := b
	if end > j.size {
		grown := (end + journalGrow - 1) / journalGrow * journalGrow
		b = append(b[:len(b):len(b)], make([]byte, grown-end)...)
		end = grown
	}
	_, err := j.f.WriteAt(b, j.off)
	if errors.Is(err, syscall.ENOSPC) && len(b) > len(rec) {
		// No room to grow ahead on a full filesystem: the record alone.
		end = j.off + int64(len(rec))
		_, err = j.f.WriteAt(rec, j.off)
	}
	if err != nil {
		return fmt.Errorf("append to journal: %w", err)
	}
	j.size = max(j.size, end)
	return nil
}

// flush makes the file durable with fdatasync. j.mu is held.
func (j *Journal) flush() error {
	if err := unix.Fdatasync(int(j.f.Fd())); err != nil {
		return fmt.Errorf("sync journal: %w", err)
	}
	j.durable = j.size
	return nil
}

// Size returns the bytes of the generation being appended to.
func (j *Journal) Size() int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.off
}

// Rotate starts a new generation and returns the one it ends: records
// appended after Rotate returns go to the new one.
func (j *Journal) Rotate() (uint64, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return 0, ErrClosed
	}
	old := j.gen
	return old, j.start(old + 1)
}

// Drop deletes the generations up to and including upTo.
func (j *Journal) Drop(upTo uint64) error {
	gens, err := j.generations()
	if err != nil {
		return err
	}
	var errs []error
	_, spare := j.spare()
	for i := len(gens) - 1; i >= 0; i-- {
		g := gens[i]
		if g > upTo {
			continue
		}
		if !spare {
			if err := os.Rename(j.path(g), j.sparePath(g)); err == nil {
				spare = true
				continue
			}
		}
		if err := os.Remove(j.path(g)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("drop journal generations: %w", err)
	}
	return nil
}

// Replay calls fn with every record of every generation present, oldest
// first, stopping in a file at its first torn or damaged record. fn's
// record is only valid during the call.
func (j *Journal) Replay(fn func(gen uint64, rec []byte) error) error {
	gens, err := j.generations()
	if err != nil {
		return err
	}
	for _, g := range gens {
		b, err := os.ReadFile(j.path(g))
		if err != nil {
			return fmt.Errorf("read journal: %w", err)
		}
		// A file holds records of one format, its first record's.
		var magic uint32
		if len(b) >= 4 {
			magic = binary.LittleEndian.Uint32(b)
		}
		for len(b) >= recordHeader {
			n := int(binary.LittleEndian.Uint32(b[4:]))
			if binary.LittleEndian.Uint32(b) != magic || n > len(b)-recordHeader {
				break
			}
			rec := b[recordHeader : recordHeader+n]
			sum := binary.LittleEndian.Uint32(b[8:])
			if magic == recordMagic && recordSum(g, rec) != sum ||
				magic == recordMagic1 && crc32.Checksum(rec, castagnoli) != sum ||
				magic != recordMagic && magic != recordMagic1 {
				break
			}
			if err := fn(g, rec); err != nil {
				return err
			}
			b = b[recordHeader+n:]
		}
	}
	return nil
}

// Close closes the journal; its files stay.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	return err
}

// recordSum is the CRC-32C of a record's generation and payload.
func recordSum(gen uint64, rec []byte) uint32 {
	return crc32.Update(crc32.Checksum(binary.LittleEndian.AppendUint64(nil, gen), castagnoli), castagnoli, rec)
}

// syncDir makes the entries of directory dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
