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

	"github.com/dhdfs/dhdfs/nodes"
)

// The metadata mirror keeps home from being a single point of failure:
// every drive holds, in its mirror area (nodes.Drive.Mirror), a full Badger backup of the
// metadata followed by incremental backups (each holding the changes
// since the one before), plus a copy of the pool config. Any one drive
// then suffices to rebuild home (Recover). Segments are written whole and
// renamed into place, so a crash leaves a chain that ends one segment
// early, never a torn one.
const (
	mirrorState = "mirror.json" // in home: how far each drive's chain reaches
	fullSuffix  = ".full"
	incSuffix   = ".inc"
	// maxIncrements bounds a chain: then a new full backup starts one, so
	// recovery loads a bounded number of segments and drops deletes that
	// Badger's compaction may have hidden from later increments.
	maxIncrements = 200
)

// mirror is the state of the metadata mirror, guarded by mu.
type mirror struct {
	mu sync.Mutex
	mirrorRecord
}

// mirrorRecord is what HOME/mirror.json keeps between opens.
type mirrorRecord struct {
	// Since is the Badger version the last segment reaches: the next
	// increment holds the changes after it.
	Since uint64 `json:"since"`
	// Seq numbers the segments; each drive's chain is complete up to
	// UpTo[drive] (a drive missing or behind gets a full backup next).
	Seq  uint64            `json:"seq"`
	Incs int               `json:"increments"` // since the last full backup
	UpTo map[uint32]uint64 `json:"up_to"`
}

func segmentName(seq uint64, suffix string) string { return fmt.Sprintf("%016x%s", seq, suffix) }

// loadMirrorState reads HOME/mirror.json, keeping for each drive the
// chain only if its last segment is really there.
func (m *Manager) loadMirrorState() {
	m.mir.UpTo = map[uint32]uint64{}
	var rec mirrorRecord
	if err := nodes.ReadJSONFile(filepath.Join(m.home, mirrorState), &rec); err != nil {
		// A new or rebuilt home: number segments after any on the drives,
		// so that the new full backup is the latest.
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

// MirrorMeta writes the metadata changes since the last call to every
// online drive: an increment to drives whose chain is complete, a full
// backup to the others (new drives, drives that were away, all drives at
// the first call). It returns how many drives hold a complete chain.
func (m *Manager) MirrorMeta() (int, error) {
	m.mir.mu.Lock()
	defer m.mir.mu.Unlock()
	type target struct {
		d    *drive
		full bool
	}
	var targets []target
	for _, d := range m.driveList() {
		if d.usable() == nil {
			continue
		}
		targets = append(targets, target{d, m.mir.Since == 0 || m.mir.Incs >= maxIncrements || m.mir.UpTo[d.num] != m.mir.Seq})
	}
	if len(targets) == 0 {
		return 0, nil
	}
	if m.meta.db == nil {
		var ds []*drive
		for _, t := range targets {
			ds = append(ds, t.d)
		}
		return m.mirrorConfig(ds)
	}
	var inc, full []byte
	var incVer, fullVer uint64
	needInc, needFull := false, false
	for _, t := range targets {
		needFull = needFull || t.full
		needInc = needInc || !t.full
	}
	if needInc {
		var buf bytes.Buffer
		v, err := m.meta.backup(&buf, m.mir.Since)
		if err != nil {
			return 0, fmt.Errorf("mirror metadata: %w", err)
		}
		inc, incVer = buf.Bytes(), v
		if incVer == 0 && !needFull {
			return len(targets), nil // nothing changed, every chain complete
		}
	}
	if needFull {
		var buf bytes.Buffer
		v, err := m.meta.backup(&buf, 0)
		if err != nil {
			return 0, fmt.Errorf("mirror metadata: %w", err)
		}
		full, fullVer = buf.Bytes(), v
	}
	cfg, err := json.MarshalIndent(m.cfg, "", "  ")
	if err != nil {
		return 0, err
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
				err = area.Write(segmentName(seq, fullSuffix), encodeSegment(full))
			}
			if err == nil {
				pruneSegments(area, seq)
			}
		} else {
			err = area.Write(segmentName(seq, incSuffix), encodeSegment(inc))
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
	// increment's end (a full taken later reaches further; the overlap
	// loads twice, harmlessly).
	if needInc {
		m.mir.Since = max(m.mir.Since, incVer)
		m.mir.Incs++
	} else {
		m.mir.Since, m.mir.Incs = fullVer, 0
	}
	b, err := json.Marshal(m.mir.mirrorRecord)
	if err == nil {
		err = nodes.WriteFileAtomic(filepath.Join(m.home, mirrorState), b, 0o600)
	}
	errs = append(errs, err)
	return complete, errors.Join(errs...)
}

// mirrorConfig is the mirror of a pool whose metadata lives in an engine
// of its own (PoolConfig.Meta), which keeps it safe apart from home: the
// drives get the pool config only, from which recover rebuilds home.
func (m *Manager) mirrorConfig(ds []*drive) (int, error) {
	cfg, err := json.MarshalIndent(m.cfg, "", "  ")
	if err != nil {
		return 0, err
	}
	var errs []error
	n := 0
	for _, d := range ds {
		area := d.record().at().Mirror()
		if have, err := area.Read(configFile); err == nil && bytes.Equal(have, append(cfg, '\n')) {
			n++
			continue
		}
		if err := area.Write(configFile, append(cfg, '\n')); err != nil {
			errs = append(errs, fmt.Errorf("drive %s: %w", d.record().Name, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// segmentMagic starts every segment file; a CRC-32C of the Badger backup
// stream follows it, then the stream.
var segmentMagic = []byte("DHDFSMS1")

func encodeSegment(stream []byte) []byte {
	b := make([]byte, 0, len(segmentMagic)+4+len(stream))
	b = append(b, segmentMagic...)
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(stream, castagnoli))
	return append(b, stream...)
}

// decodeSegment checks a segment file and returns its Badger backup
// stream. Badger's loader trusts the length prefixes of its stream (a bad
// one makes it allocate without bound), so they are checked here.
func decodeSegment(b []byte) ([]byte, error) {
	h := len(segmentMagic) + 4
	if len(b) < h || !bytes.Equal(b[:len(segmentMagic)], segmentMagic) {
		return nil, fmt.Errorf("not a metadata segment: %w", errCorrupt)
	}
	stream := b[h:]
	if crc32.Checksum(stream, castagnoli) != binary.BigEndian.Uint32(b[len(segmentMagic):]) {
		return nil, fmt.Errorf("metadata segment checksum mismatch: %w", errCorrupt)
	}
	for rest := stream; len(rest) > 0; {
		if len(rest) < 8 {
			return nil, fmt.Errorf("metadata segment ends inside a length: %w", errCorrupt)
		}
		n := binary.LittleEndian.Uint64(rest)
		if n > uint64(len(rest)-8) {
			return nil, fmt.Errorf("metadata segment entry overruns the file: %w", errCorrupt)
		}
		rest = rest[8+n:]
	}
	return stream, nil
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
