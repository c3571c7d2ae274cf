package cluster

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dhdfs/dhdfs/cluster/kv"
	"github.com/dhdfs/dhdfs/cluster/kv/badgerkv"
	"github.com/dhdfs/dhdfs/nodes"
)

// The metadata mirror keeps home from being a single point of failure:
// every drive holds, in its mirror area (nodes.Drive.Mirror), a copy of
// the pool config and a chain of segments: a full dump of the metadata
// followed by increments, each holding the metadata transactions
// (metalog.go) committed since the segment before. Any one drive then
// suffices to rebuild home (RebuildHome).
//
// The segments are engine-neutral: keys, values and deletions, as the
// pool's metadata logic wrote them through kv.Txn, so any engine can
// write them and any engine can load them, and they need nothing but a
// View from the engine. Segments are written whole and renamed into
// place, so a crash leaves a chain that ends one segment early, never a
// torn one; each is checksummed.
const (
	mirrorState = "mirror.json" // in home: how far each drive's chain reaches
	fullSuffix  = ".full"
	incSuffix   = ".inc"
	// maxIncrements bounds a chain: then a new full dump starts one, so
	// recovery loads a bounded number of segments.
	maxIncrements = 200
	// mirrorLogMax bounds the transactions kept for the next increment;
	// past it the next round writes full dumps instead.
	mirrorLogMax = 64 << 20
	// mirrorFormat is mirrorRecord.Format: 2 is the engine-neutral format;
	// a record without it describes Badger backups, which RebuildHome
	// still loads but a new chain never continues.
	mirrorFormat = 2
)

// mirror is the state of the metadata mirror, guarded by mu.
type mirror struct {
	mu sync.Mutex
	mirrorRecord
}

// mirrorRecord is what HOME/mirror.json keeps between opens.
type mirrorRecord struct {
	Format int `json:"format,omitempty"`
	// MetaSeq is the metadata transaction the chains reach: the next
	// increment holds the transactions after it. 0: no chain yet.
	MetaSeq uint64 `json:"meta_seq,omitempty"`
	// Seq numbers the segments; each drive's chain is complete up to
	// UpTo[drive] (a drive missing or behind gets a full dump next).
	Seq  uint64            `json:"seq"`
	Incs int               `json:"increments"` // since the last full dump
	UpTo map[uint32]uint64 `json:"up_to"`
}

// mirrorLog keeps the committed transactions for the next increment,
// guarded by mu. lost: some were dropped (past mirrorLogMax), so the next
// round cannot write an increment.
type mirrorLog struct {
	mu      sync.Mutex
	batches []metaBatch
	bytes   int
	lost    bool
}

// add keeps a committed transaction (called in commit order).
func (l *mirrorLog) add(b metaBatch) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost {
		return
	}
	for _, mu := range b.Muts {
		l.bytes += len(mu.Key) + len(mu.Val) + 8
	}
	if l.bytes > mirrorLogMax {
		l.batches, l.bytes, l.lost = nil, 0, true
		return
	}
	l.batches = append(l.batches, b)
}

// take returns the kept transactions and starts a new log.
func (l *mirrorLog) take() ([]metaBatch, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, lost := l.batches, l.lost
	l.batches, l.bytes, l.lost = nil, 0, false
	return b, lost
}

func segmentName(seq uint64, suffix string) string { return fmt.Sprintf("%016x%s", seq, suffix) }

// loadMirrorState reads HOME/mirror.json, keeping for each drive the
// chain only if its last segment is really there.
func (m *Manager) loadMirrorState() {
	m.mir.UpTo = map[uint32]uint64{}
	var rec mirrorRecord
	if err := nodes.ReadJSONFile(filepath.Join(m.home, mirrorState), &rec); err != nil || rec.Format != mirrorFormat {
		// A new or rebuilt home, or a chain of the old format: number
		// segments after any on the drives, so that the new full dump is
		// the latest.
		m.mir.Seq = rec.Seq
		for _, d := range m.driveList() {
			segs, _ := listSegments(d.record().at().Mirror())
			if len(segs) > 0 {
				m.mir.Seq = max(m.mir.Seq, segs[len(segs)-1].seq)
			}
		}
		return
	}
	m.mir.mirrorRecord = rec
	m.mir.UpTo = map[uint32]uint64{}
	for num, seq := range rec.UpTo {
		d := m.driveByNum(num)
		if d == nil {
			continue
		}
		segs, _ := listSegments(d.record().at().Mirror())
		if slices.ContainsFunc(segs, func(s segment) bool { return s.seq == seq }) {
			m.mir.UpTo[num] = seq
		}
	}
}

// increment returns the transactions after seq from batches, without the
// clean flag's changes, if they follow seq without a gap.
func increment(batches []metaBatch, seq uint64) ([]metaBatch, uint64, bool) {
	var inc []metaBatch
	for _, b := range batches {
		if b.Seq <= seq {
			continue // in the full dump already
		}
		if b.Seq != seq+1 {
			return nil, 0, false // replayed at open, or dropped: not logged
		}
		seq = b.Seq
		// Every open and close flips the clean flag, and a rebuilt pool
		// opens as after a crash anyway: leaving it out spares read-only
		// commands a mirror write to every drive.
		muts := slices.DeleteFunc(slices.Clone(b.Muts), func(mu mutation) bool { return bytes.Equal(mu.Key, cleanKey) })
		if len(muts) > 0 {
			inc = append(inc, metaBatch{Seq: b.Seq, Muts: muts})
		}
	}
	return inc, seq, true
}

// fullDump returns every key and value of the metadata but the clean
// flag, from one view, as a batch numbered with the last transaction it
// holds.
func (m *Manager) fullDump() (metaBatch, error) {
	var dump metaBatch
	err := m.meta.view(func(txn kv.Reader) error {
		dump.Muts = dump.Muts[:0]
		return txn.Scan(nil, nil, kv.ScanOptions{}, func(k, v []byte) error {
			switch {
			case bytes.Equal(k, cleanKey):
				return nil
			case bytes.Equal(k, metaSeqKey) && len(v) == 8:
				dump.Seq = binary.BigEndian.Uint64(v)
			}
			dump.Muts = append(dump.Muts, mutation{Key: bytes.Clone(k), Val: bytes.Clone(v)})
			return nil
		})
	})
	return dump, err
}

// MirrorMeta writes the metadata changes since the last call to every
// online drive: an increment to drives whose chain is complete, a full
// dump to the others (new drives, drives that were away, all drives when
// the transactions since the last round are not all at hand). It returns
// how many drives hold a complete chain.
func (m *Manager) MirrorMeta() (int, error) {
	m.mir.mu.Lock()
	defer m.mir.mu.Unlock()
	// Taken before the full dump's view: a transaction the dump misses
	// stays in the log for the next round.
	batches, lost := m.mirLog.take()
	inc, incSeq, ok := increment(batches, m.mir.MetaSeq)
	continues := ok && !lost && m.mir.MetaSeq > 0 && m.mir.Incs < maxIncrements
	type target struct {
		d    *drive
		full bool
	}
	var targets []target
	needInc, needFull := false, false
	for _, d := range m.driveList() {
		if d.usable() == nil {
			continue
		}
		full := !continues || m.mir.UpTo[d.num] != m.mir.Seq
		targets = append(targets, target{d, full})
		needFull = needFull || full
		needInc = needInc || !full
	}
	if len(targets) == 0 {
		if !continues {
			m.mir.MetaSeq = 0 // what was taken is gone: start over
		}
		return 0, nil
	}
	if !needFull && len(inc) == 0 {
		// Nothing but the clean flag changed: every chain is complete.
		return len(targets), m.saveMirrorState(incSeq)
	}
	cfg, err := json.MarshalIndent(m.cfg, "", "  ")
	if err != nil {
		return 0, err
	}
	var incSeg, fullSeg []byte
	var dumpSeq uint64
	if needInc {
		var body []byte
		for _, b := range inc {
			body = appendBatch(body, b)
		}
		incSeg = encodeSegment(body)
	}
	if needFull {
		dump, err := m.fullDump()
		if err != nil {
			return 0, fmt.Errorf("mirror metadata: %w", err)
		}
		fullSeg, dumpSeq = encodeSegment(appendBatch(nil, dump)), dump.Seq
	}
	// Every drive gets segment seq, even an empty increment, so that each
	// chain stays gapless.
	seq := m.mir.Seq + 1
	var errs []error
	complete := 0
	for _, t := range targets {
		area := t.d.record().at().Mirror()
		var err error
		if t.full {
			err = area.Write(configFile, append(cfg, '\n'))
			if err == nil {
				err = area.Write(segmentName(seq, fullSuffix), fullSeg)
			}
			if err == nil {
				pruneSegments(area, seq)
			}
		} else {
			err = area.Write(segmentName(seq, incSuffix), incSeg)
		}
		if err != nil {
			delete(m.mir.UpTo, t.d.num)
			errs = append(errs, fmt.Errorf("drive %s: %w", t.d.record().Name, err))
			continue
		}
		m.mir.UpTo[t.d.num] = seq
		complete++
	}
	m.mir.Seq = seq
	// The next increment starts after what every chain now holds: the
	// increment's end (a full dump reaches at least as far; a loader skips
	// the transactions a dump holds already).
	if needInc {
		m.mir.Incs++
	} else {
		incSeq, m.mir.Incs = dumpSeq, 0
	}
	return complete, errors.Join(append(errs, m.saveMirrorState(incSeq))...)
}

// saveMirrorState records that the chains reach transaction metaSeq.
func (m *Manager) saveMirrorState(metaSeq uint64) error {
	if metaSeq == m.mir.MetaSeq && m.mir.Format == mirrorFormat {
		return nil
	}
	m.mir.MetaSeq, m.mir.Format = metaSeq, mirrorFormat
	b, err := json.Marshal(m.mir.mirrorRecord)
	if err == nil {
		err = nodes.WriteFileAtomic(filepath.Join(m.home, mirrorState), b, 0o600)
	}
	return err
}

// segmentMagic starts every segment file; a CRC-32C of the body follows
// it, then the body: metadata transactions encoded as the journal encodes
// them (appendBatch), one per transaction in an increment, and one
// holding every key in a full dump. legacyMagic starts a segment of the
// first format, a Badger backup stream (badgerkv.ReadBackup).
var (
	segmentMagic = []byte("DHDFSMS2")
	legacyMagic  = []byte("DHDFSMS1")
)

func encodeSegment(body []byte) []byte {
	b := make([]byte, 0, len(segmentMagic)+4+len(body))
	b = append(b, segmentMagic...)
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(body, castagnoli))
	return append(b, body...)
}

// decodeSegment checks a segment file and calls fn for each transaction
// it holds, in order. A segment of the first format yields one
// transaction, numbered 0, with what its Badger backup holds.
func decodeSegment(b []byte, fn func(metaBatch) error) error {
	h := len(segmentMagic) + 4
	if len(b) < h {
		return fmt.Errorf("not a metadata segment: %w", errCorrupt)
	}
	legacy := bytes.Equal(b[:len(legacyMagic)], legacyMagic)
	if !legacy && !bytes.Equal(b[:len(segmentMagic)], segmentMagic) {
		return fmt.Errorf("not a metadata segment: %w", errCorrupt)
	}
	body := b[h:]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(b[len(segmentMagic):]) {
		return fmt.Errorf("metadata segment checksum mismatch: %w", errCorrupt)
	}
	if legacy {
		var batch metaBatch
		err := badgerkv.ReadBackup(body, func(k, v []byte, del bool) error {
			batch.Muts = append(batch.Muts, mutation{Key: bytes.Clone(k), Val: bytes.Clone(v), Del: del})
			return nil
		})
		if err != nil {
			return fmt.Errorf("metadata segment: %w: %w", err, errCorrupt)
		}
		return fn(batch)
	}
	// Decoded whole before any is applied: a damaged segment applies none.
	var batches []metaBatch
	for d := (decoder{b: body}); len(d.b) > 0; {
		batch := readBatch(&d)
		if d.err != nil {
			return fmt.Errorf("metadata segment: %w", d.err)
		}
		batches = append(batches, batch)
	}
	for _, batch := range batches {
		if err := fn(batch); err != nil {
			return err
		}
	}
	return nil
}

// pruneSegments deletes the segments before seq, a new full backup.
func pruneSegments(area nodes.FileArea, seq uint64) {
	segs, _ := listSegments(area)
	for _, s := range segs {
		if s.seq < seq {
			area.Remove(s.name)
		}
	}
}

type segment struct {
	seq  uint64
	full bool
	name string
}

// listSegments returns a mirror area's segments in order.
func listSegments(area nodes.FileArea) ([]segment, error) {
	names, err := area.List()
	if err != nil {
		return nil, err
	}
	var segs []segment
	for _, name := range names {
		suffix := filepath.Ext(name)
		if suffix != fullSuffix && suffix != incSuffix {
			continue
		}
		seq, err := strconv.ParseUint(strings.TrimSuffix(name, suffix), 16, 64)
		if err != nil {
			continue
		}
		segs = append(segs, segment{seq: seq, full: suffix == fullSuffix, name: name})
	}
	slices.SortFunc(segs, func(a, b segment) int { return cmp.Compare(a.seq, b.seq) })
	return segs, nil
}

// last full backup and the increments that follow it without a gap.
func chainFrom(segs []segment) ([]segment, error) {
	start := -1
	for i, s := range segs {
		if s.full {
			start = i
		}
	}
	if start < 0 {
		return nil, errors.New("no full metadata backup on this drive")
	}
	chain := []segment{segs[start]}
	for _, s := range segs[start+1:] {
		if s.full || s.seq != chain[len(chain)-1].seq+1 {
			break
		}
		chain = append(chain, s)
	}
	return chain, nil
}

// startMirror mirrors the metadata every interval in the background.
func (m *Manager) startMirror(interval time.Duration) {
	m.runEvery(interval, nil, func(context.Context) {
		if _, err := m.MirrorMeta(); err != nil {
			m.log.Warn("mirror metadata", "err", err)
		}
	})
}
