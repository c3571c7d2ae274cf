// Package kv is the contract between the pool's metadata logic and the
// engine that stores it: an ordered key-value store with serializable
// transactions. Engines register a URL scheme (Register) and are opened
// from a URL (Open): badger:///path (or a bare path) for the embedded
// default, mem:// for tests, etcd://host:port,... for a cluster.
//
// The contract, which kvtest checks for every engine:
//
//   - Keys are non-empty byte strings ordered bytewise; values are byte
//     strings, possibly empty. A key is at most Limits().MaxKeyBytes long,
//     a value at most Limits().MaxValueBytes.
//   - View runs a read-only transaction: every read in it sees one
//     committed state, the same for the whole transaction, which includes
//     every transaction committed before View began.
//   - Attempt runs a read-write transaction once. Its reads see that
//     transaction's own writes over one committed state. If fn returns
//     nil, its writes are committed atomically — all or none — and the
//     transaction is serializable: when another transaction committed,
//     after this one's state was taken, a change to anything this one read
//     (a key it got, a key it found absent, a range it scanned), Attempt
//     applies nothing and returns an error wrapping ErrConflict. Update
//     retries those; callers use Update, not Attempt.
//   - A transaction larger than Limits() (keys written, bytes written,
//     keys read for conflict checks) fails with an error wrapping
//     ErrTooBig and applies nothing. No engine ever splits a transaction.
//   - Slices passed to Set and Delete may be reused by the caller once the
//     call returns. A value returned by Get belongs to the caller and stays
//     valid after the transaction. Keys and values passed to a Scan
//     callback are valid only during that call.
//   - A committed transaction survives a crash of the process once Sync
//     returned after it (engines may make it durable sooner).
//   - Every method may be called from many goroutines; a Txn or Reader is
//     used only inside its fn, by one goroutine.
package kv

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"
)

var (
	// ErrNotFound: Get of an absent key.
	ErrNotFound = errors.New("key not found")
	// ErrConflict: a concurrent commit invalidated what the transaction
	// read; it applied nothing and may be retried.
	ErrConflict = errors.New("transaction conflict")
	// ErrTooBig: the transaction exceeds the engine's Limits; it applied
	// nothing. Split the work into smaller transactions.
	ErrTooBig = errors.New("transaction too big for the metadata engine")
	// ErrClosed: the engine was closed.
	ErrClosed = errors.New("metadata engine closed")
	// ErrUnknownScheme: no engine registered for a URL's scheme.
	ErrUnknownScheme = errors.New("unknown metadata engine")
	// ErrDamaged is wrapped by *DamagedError.
	ErrDamaged = errors.New("metadata store damaged")
)

// DamagedError reports stored data an engine found damaged and will not
// use as it is (rather than guess, or lose what it cannot read).
type DamagedError struct {
	Where  string // the store: a directory, a URL
	Detail string // what was found, on one line
}

func (e *DamagedError) Error() string {
	return fmt.Sprintf("metadata store %s is damaged: %s", e.Where, e.Detail)
}

func (e *DamagedError) Unwrap() error { return ErrDamaged }

// Engine is a transactional, ordered key-value store. See the package
// documentation for the contract.
type Engine interface {
	// View runs fn in a read-only transaction over one committed state.
	View(ctx context.Context, fn func(Reader) error) error
	// Attempt runs fn once in a read-write transaction and commits its
	// writes if fn returns nil; see the package documentation.
	Attempt(ctx context.Context, fn func(Txn) error) error
	// Sync makes every transaction committed so far durable.
	Sync() error
	// Limits reports the largest transaction and value the engine takes.
	Limits() Limits
	// Close releases the engine; later calls fail with ErrClosed.
	Close() error
}

// Reader reads inside a transaction.
type Reader interface {
	// Get returns key's value, or an error wrapping ErrNotFound.
	Get(key []byte) ([]byte, error)
	// Scan calls fn for the keys in [start, end) in ascending order (end
	// nil: no upper bound) and their values, until fn returns an error
	// (returned by Scan) or opts.Limit keys were visited. Inside a Txn, fn
	// may write; whether the scan then sees those writes is unspecified.
	Scan(start, end []byte, opts ScanOptions, fn func(key, value []byte) error) error
}

// ScanOptions shape a Scan.
type ScanOptions struct {
	// Limit stops the scan after so many keys; 0 means no limit.
	Limit int
	// KeysOnly passes nil values to fn, which saves reading them.
	KeysOnly bool
}

// Txn reads and writes inside a read-write transaction.
type Txn interface {
	Reader
	// Set writes key's value, visible to this transaction's reads at once
	// and to others once it commits.
	Set(key, value []byte) error
	// Delete removes key; deleting an absent key is not an error.
	Delete(key []byte) error
}

// Limits are the largest things an engine takes. Callers size batches
// from them rather than from a constant.
type Limits struct {
	// MaxTxnKeys is the most keys one read-write transaction may write
	// (sets and deletes).
	MaxTxnKeys int
	// MaxTxnBytes is the most bytes of keys and values one read-write
	// transaction may write.
	MaxTxnBytes int
	// MaxTxnReads is the most keys and ranges a read-write transaction may
	// read (an engine that checks conflicts per key bounds them); 0: no
	// limit.
	MaxTxnReads int
	// MaxKeyBytes and MaxValueBytes bound one key and one value.
	MaxKeyBytes   int
	MaxValueBytes int
}

// Update runs fn in a read-write transaction, retrying it while it
// conflicts with concurrent ones, so fn may run more than once and must
// not have effects outside the transaction that a retry would repeat.
// It gives up when ctx ends.
func Update(ctx context.Context, e Engine, fn func(Txn) error) error {
	backoff := time.Millisecond
	for {
		err := e.Attempt(ctx, fn)
		if !errors.Is(err, ErrConflict) {
			return err
		}
		// Jittered, growing waits keep two writers of a hot key from
		// colliding again in lockstep.
		t := time.NewTimer(backoff/2 + rand.N(backoff))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (gave up: %w)", err, context.Cause(ctx))
		case <-t.C:
		}
		backoff = min(2*backoff, 100*time.Millisecond)
	}
}

// CheckWrite reports an error wrapping ErrTooBig when key or value exceeds
// l; engines call it in Set.
func (l Limits) CheckWrite(key, value []byte) error {
	switch {
	case len(key) == 0:
		return errors.New("empty key")
	case l.MaxKeyBytes > 0 && len(key) > l.MaxKeyBytes:
		return fmt.Errorf("key of %d bytes, more than the %d the engine takes: %w", len(key), l.MaxKeyBytes, ErrTooBig)
	case l.MaxValueBytes > 0 && len(value) > l.MaxValueBytes:
		return fmt.Errorf("value of %d bytes, more than the %d the engine takes: %w", len(value), l.MaxValueBytes, ErrTooBig)
	}
	return nil
}

// PrefixEnd returns the smallest key after every key that starts with
// prefix, the end of a Scan of the prefix; nil (no bound) when there is
// none (an empty prefix, or one of 0xff bytes only).
func PrefixEnd(prefix []byte) []byte {
	for i := len(prefix) - 1; i >= 0; i-- {
		if prefix[i] != 0xff {
			end := append([]byte(nil), prefix[:i+1]...)
			end[i]++
			return end
		}
	}
	return nil
}

// WriteBudget counts a transaction's writes against Limits, for engines
// that check them as the writes arrive. The first limit broken sticks in
// Err: that transaction must not commit.
type WriteBudget struct {
	Limits Limits
	// Engine names the engine in the error ("Badger").
	Engine      string
	keys, bytes int
	Err         error
}

// Add counts one write (a delete has a nil value).
func (b *WriteBudget) Add(key, value []byte) error {
	if b.Err != nil {
		return b.Err
	}
	if err := b.Limits.CheckWrite(key, value); err != nil {
		b.Err = err
		return err
	}
	b.keys++
	b.bytes += len(key) + len(value)
	if b.keys > b.Limits.MaxTxnKeys || b.bytes > b.Limits.MaxTxnBytes {
		b.Err = fmt.Errorf("%d keys, %d bytes written; %s takes %d keys, %d bytes in one transaction: %w",
			b.keys, b.bytes, b.Engine, b.Limits.MaxTxnKeys, b.Limits.MaxTxnBytes, ErrTooBig)
	}
	return b.Err
}

// Opener opens an engine from a URL of its scheme.
type Opener func(u *url.URL) (Engine, error)

var (
	registryMu sync.Mutex
	registry   = map[string]Opener{}
)

// Register makes an engine available under scheme. Engines register from
// an init function; registering a scheme twice panics, as it is a
// programming error.
func Register(scheme string, open Opener) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, ok := registry[scheme]; ok {
		panic("kv: engine " + scheme + " registered twice")
	}
	registry[scheme] = open
}

// Schemes lists the registered schemes, sorted.
func Schemes() []string {
	registryMu.Lock()
	defer registryMu.Unlock()
	var out []string
	for s := range registry {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// Open opens the engine a URL names. A string without "://" is a path
// for the default engine, badger.
func Open(location string) (Engine, error) {
	var u *url.URL
	switch {
	case location == "":
		return nil, errors.New("empty metadata engine location")
	case !strings.Contains(location, "://"):
		u = &url.URL{Scheme: "badger", Path: location}
	default:
		var err error
		if u, err = url.Parse(location); err != nil {
			return nil, fmt.Errorf("metadata engine %q: %w", location, err)
		}
	}
	registryMu.Lock()
	open := registry[u.Scheme]
	registryMu.Unlock()
	if open == nil {
		return nil, fmt.Errorf("metadata engine %q: %w %q (known: %s)", location, ErrUnknownScheme, u.Scheme, strings.Join(Schemes(), ", "))
	}
	return open(u)
}
