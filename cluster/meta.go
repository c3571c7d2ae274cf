package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/dhdfs/dhdfs/cluster/kv"
	"github.com/dhdfs/dhdfs/cluster/kv/badgerkv"
	"github.com/dhdfs/dhdfs/nodes"
)

// metaDB is the pool's metadata store: a Badger database in HOME/meta,
// or the engine PoolConfig.Meta names. Every change that spans keys is
// one transaction.
type metaDB struct {
	eng kv.Engine
	dir string // where the store is: a directory or a URL
	// batch is how many items (slots, chunks, fixes) one transaction takes
	// when work spans a whole file or the keyspace: each may write up to
	// keysPerItem keys, and an engine's limit is never reached.
	batch int
	// changes counts committed transactions; synced is its value at the
	// start of the last successful sync. They differ while some committed
	// change may not be on disk.
	changes, synced atomic.Uint64
	// writeMu serialises write transactions, so that their sequence
	// numbers are their commit order (metalog.go).
	writeMu sync.Mutex
	seq     uint64                            // guarded by writeMu: the last write transaction
	logged  func(seq uint64, muts []mutation) // guarded by writeMu: called after each commit, if set
}

// openMeta opens (or creates) the meta store in dir. A store Badger could
// not read safely is refused with a *MetaDamagedError.
func openMeta(dir string, log *slog.Logger) (*metaDB, error) {
	eng, err := badgerkv.OpenStore(dir, badgerkv.StoreOptions{
		MemTableSize: metaMemtable, NumMemtables: metaMemtables, BlockCacheSize: metaBlockCache, Log: log})
	if err != nil {
		return nil, homeDamage(dir, err)
	}
	m := &metaDB{eng: eng, dir: dir}
	m.batch = batchFor(m.eng.Limits())
	if err := m.view(func(txn kv.Reader) error {
		v, ok, err := get(txn, metaSeqKey)
		if ok && len(v) == 8 {
			m.seq = binary.BigEndian.Uint64(v)
		}
		return err
	}); err != nil {
		eng.Close()
		return nil, err
	}
	return m, nil
}

// openPoolMeta opens the metadata of a pool whose config is cfg: the
// Badger store in home, or the engine cfg.Meta names.
func openPoolMeta(home string, cfg PoolConfig, log *slog.Logger) (*metaDB, error) {
	if cfg.Meta == "" {
		return openExistingMeta(filepath.Join(home, metaDir), log)
	}
	return openEngineMeta(cfg.Meta, false)
}

// openEngineMeta opens the metadata engine at url. A new pool's (create)
// must find it empty, an existing pool's must find the pool there.
func openEngineMeta(url string, create bool) (*metaDB, error) {
	eng, err := kv.Open(url)
	if err != nil {
		return nil, fmt.Errorf("open metadata engine: %w", err)
	}
	m := &metaDB{eng: eng, dir: url, batch: batchFor(eng.Limits())}
	empty := true
	err = m.view(func(txn kv.Reader) error {
		if err := txn.Scan(nil, nil, kv.ScanOptions{KeysOnly: true, Limit: 1}, func(_, _ []byte) error {
			empty = false
			return nil
		}); err != nil {
			return err
		}
		v, ok, err := get(txn, metaSeqKey)
		if ok && len(v) == 8 {
			m.seq = binary.BigEndian.Uint64(v)
		}
		return err
	})
	switch {
	case err != nil:
	case create && !empty:
		err = fmt.Errorf("metadata engine %s already holds data: give a new prefix: %w", url, ErrPoolExists)
	case !create && empty:
		err = metaDamaged(url, "the metadata engine %s holds no pool", url)
	}
	if err != nil {
		eng.Close()
		return nil, err
	}
	return m, nil
}

// openExistingMeta opens the meta store of a pool, which must exist:
// Badger would start an empty store in place of a missing one, a pool
// without even its root directory.
func openExistingMeta(dir string, log *slog.Logger) (*metaDB, error) {
	if ok, err := badgerkv.Exists(dir); err != nil || !ok {
		return nil, errors.Join(err, metaDamaged(dir, "%s is missing or empty", dir))
	}
	return openMeta(dir, log)
}

// keysPerItem is what batchFor assumes one item of a batch writes.
const keysPerItem = 8

// batchFor sizes batches for an engine's limits: at most 512 items, so
// that a transaction stays short even where an engine takes more.
func batchFor(l kv.Limits) int {
	return min(max(l.MaxTxnKeys/keysPerItem, 1), 512)
}

func (m *metaDB) close() error { return m.eng.Close() }

// sync makes every committed transaction durable.
func (m *metaDB) sync() error {
	c := m.changes.Load()
	if err := m.eng.Sync(); err != nil {
		return fmt.Errorf("sync metadata: %w", homeDamage(m.dir, err))
	}
	for s := m.synced.Load(); s < c && !m.synced.CompareAndSwap(s, c); s = m.synced.Load() {
	}
	return nil
}

// unsynced reports whether a committed change may not be on disk yet.
func (m *metaDB) unsynced() bool { return m.changes.Load() != m.synced.Load() }

// update runs fn in a read-write transaction, retried (kv.Update) when
// the engine reports a conflict.
func (m *metaDB) update(fn func(txn kv.Txn) error) (err error) {
	return m.commit(fn, true)
}

// tidy is update for bookkeeping whose loss in a crash is harmless
// (settling slots: a slot left unsettled is settled again; deleting
// collected chunks' records: collected again; references it drops are
// recounted after a crash): it neither counts as a change waiting for a
// sync nor goes into the metadata journal.
func (m *metaDB) tidy(fn func(txn kv.Txn) error) (err error) {
	return m.commit(fn, false)
}

func (m *metaDB) commit(fn func(txn kv.Txn) error, counts bool) (err error) {
	m.writeMu.Lock()
	defer m.writeMu.Unlock()
	var rec recordingTxn
	err = kv.Update(context.Background(), m.eng, func(txn kv.Txn) error {
		if !counts {
			return fn(txn)
		}
		rec = recordingTxn{Txn: txn, muts: rec.muts[:0]}
		if err := fn(&rec); err != nil || len(rec.muts) == 0 {
			return err
		}
		return txn.Set(metaSeqKey, binary.BigEndian.AppendUint64(nil, m.seq+1))
	})
	if err != nil {
		return homeDamage(m.dir, err)
	}
	if len(rec.muts) > 0 {
		m.seq++
		if m.logged != nil {
			m.logged(m.seq, rec.muts)
		}
	}
	if counts {
		m.changes.Add(1)
	}
	return nil
}

// recordingTxn notes every write of a transaction, for the metadata
// journal and the mirror's increments (metalog.go). It keeps copies: the
// kv contract lets a caller reuse its buffers once Set returns (a key
// taken from a scan is valid only during its callback), and the notes
// live until the next sync round and mirror round.
type recordingTxn struct {
	kv.Txn
	muts []mutation
}

func (t *recordingTxn) Set(key, val []byte) error {
	if err := t.Txn.Set(key, val); err != nil {
		return err
	}
	b := append(append(make([]byte, 0, len(key)+len(val)), key...), val...)
	t.muts = append(t.muts, mutation{Key: b[:len(key):len(key)], Val: b[len(key):]})
	return nil
}

func (t *recordingTxn) Delete(key []byte) error {
	if err := t.Txn.Delete(key); err != nil {
		return err
	}
	t.muts = append(t.muts, mutation{Key: bytes.Clone(key), Del: true})
	return nil
}

// view runs fn in a read-only transaction over one committed state.
func (m *metaDB) view(fn func(txn kv.Reader) error) error {
	return homeDamage(m.dir, m.eng.View(context.Background(), fn))
}

// homeDamage turns damage the engine found in the store at dir into a
// *MetaDamagedError, which says how to rebuild it.
func homeDamage(dir string, err error) error {
	var de *kv.DamagedError
	if errors.As(err, &de) {
		return metaDamaged(dir, "%s", de.Detail)
	}
	return err
}

// paged runs fn over a reader whose scans go a page at a time, each page
// in a short view of its own, as do its gets. It is for work over the
// whole keyspace (status, the healer's sweep, recounts) that must not hold
// one transaction open for long (a distributed engine bounds a
// transaction's life and size) and tolerates changes between pages. fsck,
// which compares records with each other, keeps one view.
func (m *metaDB) paged(fn func(txn kv.Reader) error) error { return fn(pagedReader{m}) }

// scanPage is how many keys a page of a paged scan reads.
var scanPage = 1024

type pagedReader struct{ m *metaDB }

func (p pagedReader) Get(key []byte) ([]byte, error) {
	var v []byte
	err := p.m.view(func(r kv.Reader) error {
		var err error
		v, err = r.Get(key)
		return err
	})
	return v, err
}

func (p pagedReader) Scan(start, end []byte, opts kv.ScanOptions, fn func(k, v []byte) error) error {
	seen := 0
	for {
		n := scanPage
		if opts.Limit > 0 {
			n = min(n, opts.Limit-seen)
		}
		got := 0
		var last []byte
		err := p.m.view(func(r kv.Reader) error {
			return r.Scan(start, end, kv.ScanOptions{Limit: n, KeysOnly: opts.KeysOnly}, func(k, v []byte) error {
				got++
				last = append(last[:0], k...)
				return fn(k, v)
			})
		})
		if err != nil {
			return err
		}
		if seen += got; got < n || (opts.Limit > 0 && seen >= opts.Limit) {
			return nil
		}
		start = append(bytes.Clone(last), 0)
	}
}

// get returns the value of key, or nil and false when absent.
func get(txn kv.Reader, key []byte) ([]byte, bool, error) {
	v, err := txn.Get(key)
	if errors.Is(err, kv.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read metadata: %w", err)
	}
	return v, true, nil
}

func set(txn kv.Txn, key, val []byte) error {
	if err := txn.Set(key, val); err != nil {
		return fmt.Errorf("write metadata: %w", err)
	}
	return nil
}

func del(txn kv.Txn, key []byte) error {
	if err := txn.Delete(key); err != nil {
		return fmt.Errorf("write metadata: %w", err)
	}
	return nil
}

// scan calls fn for each key with prefix, in order; fn's key and value are
// only valid during the call. Returning errStop ends the scan quietly.
func scan(txn kv.Reader, prefix []byte, keysOnly bool, fn func(key, val []byte) error) error {
	return scanFrom(txn, prefix, prefix, kv.ScanOptions{KeysOnly: keysOnly}, fn)
}

// scanFrom is scan from key start (within prefix) on, as opts says.
func scanFrom(txn kv.Reader, prefix, start []byte, opts kv.ScanOptions, fn func(key, val []byte) error) error {
	if err := txn.Scan(start, kv.PrefixEnd(prefix), opts, fn); !errors.Is(err, errStop) {
		return err
	}
	return nil
}

var errStop = errors.New("stop scan")

func getInode(txn kv.Reader, ino Ino) (Inode, error) {
	v, ok, err := get(txn, inoKey(kInode, ino))
	if err != nil {
		return Inode{}, err
	}
	if !ok {
		return Inode{}, fmt.Errorf("inode %d: %w", ino, ErrNotFound)
	}
	return decodeInode(ino, v)
}

func putInode(txn kv.Txn, i *Inode) error {
	return set(txn, inoKey(kInode, i.Ino), i.encode())
}

func getDentry(txn kv.Reader, parent Ino, name string) (dentry, bool, error) {
	v, ok, err := get(txn, dentryKey(parent, name))
	if err != nil || !ok {
		return dentry{}, false, err
	}
	e, err := decodeDentry(v)
	return e, err == nil, err
}

func getChunkRecord(txn kv.Reader, id nodes.ChunkID) (chunkRecord, bool, error) {
	v, ok, err := get(txn, chunkKey(kChunk, id))
	if err != nil || !ok {
		return chunkRecord{}, false, err
	}
	c, err := decodeChunkRecord(v)
	if err != nil {
		return chunkRecord{}, false, fmt.Errorf("chunk %s: %w", id.Short(), err)
	}
	return c, true, nil
}

// newIno gives out a new inode number and counts the inode as existing.
func newIno(txn kv.Txn) (Ino, error) {
	n, err := counter(txn, inoCounterKey, uint64(RootIno)+1)
	if err != nil {
		return 0, err
	}
	if err := addCount(txn, inodeCountKey, 1); err != nil {
		return 0, err
	}
	return Ino(n), nil
}

// addCount adds delta to the uint64 count at key. An absent count is
// unknown and stays so (a pool from before it was kept: opening counts
// it), and a count never goes below zero.
func addCount(txn kv.Txn, key []byte, delta int64) error {
	v, ok, err := get(txn, key)
	if err != nil || !ok || len(v) != 8 {
		return err
	}
	n := uint64(max(int64(binary.BigEndian.Uint64(v))+delta, 0))
	return set(txn, key, binary.BigEndian.AppendUint64(nil, n))
}

// counter increments the uint64 counter at key and returns its new value.
func counter(txn kv.Txn, key []byte, start uint64) (uint64, error) {
	v, ok, err := get(txn, key)
	if err != nil {
		return 0, err
	}
	n := start
	if ok && len(v) == 8 {
		n = binary.BigEndian.Uint64(v) + 1
	}
	return n, set(txn, key, binary.BigEndian.AppendUint64(nil, n))
}
