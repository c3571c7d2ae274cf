// Package nodes stores the chunks of one drive. A drive is a directory the
// user names; it holds an identity file and one Badger store of chunks keyed
// by their content hash. The package knows nothing of files or replicas:
// placement, verification and repair live in package cluster.
package nodes

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
)

// ChunkID names a chunk by a 256-bit hash of its content: SHA-256 in
// pools made before BLAKE3, BLAKE3 since (see Hash). Even on the CPU's SHA
// extensions SHA-256 took 0.6 s of CPU per GiB here, nearly half of what
// writing a GiB cost the mount; BLAKE3's vector code takes 0.2 s.
type ChunkID [32]byte

// SumChunk returns the SHA-256 ChunkID of data, the hash of older pools.
func SumChunk(data []byte) ChunkID { return sha256.Sum256(data) }

// Hash names the function that names chunks in a pool.
type Hash string

// The chunk hashes a pool can use. The empty Hash is SHA256, for pools
// whose settings predate the choice.
const (
	SHA256 Hash = "sha256"
	BLAKE3 Hash = "blake3"
)

// Sum returns the ChunkID of data under h; h must be valid (see Valid).
func (h Hash) Sum(data []byte) ChunkID {
	if h == BLAKE3 {
		return blake3Sum256(data)
	}
	return sha256.Sum256(data)
}

// Valid reports whether h names a known hash.
func (h Hash) Valid() bool { return h == "" || h == SHA256 || h == BLAKE3 }

// String returns the hex form of the id.
func (id ChunkID) String() string { return hex.EncodeToString(id[:]) }

// Short returns the first 12 hex digits, enough to tell chunks apart in logs.
func (id ChunkID) Short() string { return id.String()[:12] }

// ParseChunkID parses the hex form produced by String.
func ParseChunkID(s string) (ChunkID, error) {
	var id ChunkID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("parse chunk id %q: want %d hex digits", s, 2*len(id))
	}
	copy(id[:], b)
	return id, nil
}

var (
	// ErrNotFound is returned by Get when the store does not hold the chunk.
	ErrNotFound = errors.New("chunk not found")
	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("drive store is closed")
	// ErrBusy means the store is briefly unavailable for maintenance; the
	// caller should use another copy rather than count it as a failure.
	ErrBusy = errors.New("drive store is busy with maintenance")
	// ErrNotDrive means a directory has no dhdfs identity file.
	ErrNotDrive = errors.New("not a dhdfs drive")
)

// Usage describes a drive's space.
type Usage struct {
	// Used is the bytes the store occupies on disk (keys, values, logs).
	Used int64
	// Free is the bytes available to unprivileged writers on the underlying
	// filesystem.
	Free int64
	// Total is the size of the underlying filesystem.
	Total int64
}

// Store is the chunk store of one drive. Implementations are safe for
// concurrent use. Every method but Close returns ErrClosed after Close.
type Store interface {
	// Put stores data under id. Putting an id that is already stored
	// succeeds and may replace the stored bytes (healing rewrites a copy
	// that went bad this way). The store does not check that id matches data;
	// the caller owns checksums. Data written by Put survives a crash of the
	// process once Put returns, and a crash of the machine once Sync returns.
	// Put does not keep data after it returns, with one exception: after
	// an error wrapping ErrTimeout the call may still be running (see
	// WithTimeout), and the caller must not change or reuse data.
	Put(id ChunkID, data []byte) error
	// Get returns the chunk's bytes appended to buf[:0] (buf may be nil).
	// It returns an error wrapping ErrNotFound if the chunk is absent.
	Get(id ChunkID, buf []byte) ([]byte, error)
	// GetRange returns up to n bytes of the chunk from offset off (fewer at
	// its end, none past it) appended to buf[:0], reading no more of the
	// chunk than that where the store allows.
	GetRange(id ChunkID, off, n int, buf []byte) ([]byte, error)
	// Has reports whether the chunk is stored.
	Has(id ChunkID) (bool, error)
	// Delete removes the chunk. Deleting an absent chunk succeeds.
	Delete(id ChunkID) error
	// Iterate calls fn for every stored chunk with its size, in id order,
	// and stops at the first error fn returns, returning it.
	Iterate(fn func(id ChunkID, size int64) error) error
	// Sync makes every completed Put and Delete durable on stable storage.
	Sync() error
	// Usage reports the space used by the store and free on its filesystem.
	Usage() (Usage, error)
	// Close releases the store. It is safe to call more than once.
	Close() error
}

// GarbageCollector is implemented by stores that need a nudge to give the
// space of deleted chunks back to the filesystem.
type GarbageCollector interface {
	CollectGarbage() error
}

// Reclaimer is implemented by stores that keep the space of deleted and
// overwritten chunks until they rewrite the files holding it, and that
// can do so while in use, without closing. A background reclaimer in
// package cluster decides when; GarbageCollector stays the explicit,
// do-everything-now variant.
type Reclaimer interface {
	// Space reports the store's own estimate of its space. It measures
	// the store's files: cheap enough to call every few seconds.
	Space() (Space, error)
	// Deleted returns Space().Deleted without measuring anything: cheap
	// enough to call at any time, to tell when to call Space.
	Deleted() int64
	// Reclaim gives dead space back to the filesystem while the store
	// stays in use: calls made meanwhile succeed, though writes may wait
	// a moment (well under a second) while the store flushes. First it
	// makes the store's accounting of dead bytes current; then it works
	// in rounds, each rewriting the live data of at most one file of
	// about Space.Unit bytes whose dead share is at least opts.MinDead,
	// and deleting the file. After each round it calls opts.Between, if
	// set; an error from Between, or ctx ending, stops Reclaim, which
	// returns that error with what was done so far. Otherwise it returns
	// when no file qualifies among those there were when it started
	// (files that go dead meanwhile are for the next call, so that a
	// steady stream of writes and deletes cannot keep it going). A round needs free space on the filesystem
	// for the live part of its file, at most (1-MinDead)·Unit bytes: the
	// caller sizes MinDead to the space there is. Concurrent calls to
	// Reclaim (and CollectGarbage) run one after the other.
	Reclaim(ctx context.Context, opts ReclaimOptions) (ReclaimResult, error)
}

// Space is a Reclaimer's estimate of its space.
type Space struct {
	// Used is the bytes the store occupies on disk, as Usage.Used.
	Used int64
	// Live is the bytes of the chunks it holds. Used - Live is roughly
	// what Reclaim could give back, plus a little of the store's own
	// overhead; it is an estimate, which may lag behind concurrent calls.
	Live int64
	// Unit is the size of the files Reclaim rewrites whole: space comes
	// back a file at a time, and the newest file (being written) only
	// once it is full.
	Unit int64
	// Deleted counts the bytes of chunks deleted or replaced since the
	// store was opened: the dead bytes made between two calls to Space
	// are the difference.
	Deleted int64
	// RotateBusy says that Rotate would make the store unavailable for a
	// moment (it reopens); otherwise rotating costs no more than a round,
	// and a caller short of space may rotate whenever it reclaims.
	RotateBusy bool
}

// Dead returns Used - Live, or zero.
func (s Space) Dead() int64 { return max(0, s.Used-s.Live) }

// ReclaimOptions steer Reclaim.
type ReclaimOptions struct {
	// MinDead is the share of a file that must be dead for Reclaim to
	// rewrite it, in (0, 1); zero means 0.5. Lower reclaims more, at the
	// cost of rewriting more live data per byte freed.
	MinDead float64
	// Between, if set, is called after each round with the result so far;
	// it may wait (throttling) and ends Reclaim by returning an error.
	Between func(ctx context.Context, sofar ReclaimResult) error
	// Pace, if set, is called before each chunk a round copies; it may wait
	// (to leave the disk to other I/O for a moment) and ends Reclaim by
	// returning an error. The store stays usable while it waits, but
	// closing it or taking it offline waits for Pace to return.
	Pace func(ctx context.Context) error
	// Rotate first closes the file being written, so that it can be
	// reclaimed too (Reclaim never rewrites it otherwise). A store may
	// have to be unavailable for a moment to do that (Space.RotateBusy):
	// calls made meanwhile then fail with ErrBusy.
	Rotate bool
}

// ReclaimResult says what Reclaim did.
type ReclaimResult struct {
	// Rounds counts the files rewritten and deleted.
	Rounds int
	// Freed is how much Used shrank (negative if writes meanwhile grew
	// the store more than Reclaim shrank it).
	Freed int64
}

// Options tune a drive's chunk store.
type Options struct {
	// Logger receives the store's warnings and errors (crash recovery,
	// damaged entries, its database's own). Nil discards them.
	Logger *slog.Logger
	// ValueLogFileSize sets the size of the store's files where it keeps
	// chunk bytes, the unit in which deleted space comes back. Zero lets
	// the store choose from the space it has.
	ValueLogFileSize int64
}

// Range returns v[off:off+n] cut to v's length: what Store.GetRange
// returns for a chunk whose bytes are v.
func Range(v []byte, off, n int) []byte {
	if off >= len(v) || off < 0 || n <= 0 {
		return nil
	}
	return v[off:min(off+n, len(v))]
}

// StoreMemory is what one store may hold in memory at once (its indexes'
// buffers and caches, not the chunks passing through): the pool's memory
// budget counts it per drive, and every kind of store keeps within it.
const StoreMemory = 10 << 20
