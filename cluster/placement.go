package cluster

import (
	"cmp"
	"math/rand/v2"
	"slices"
)

// A drive's reserve is left free on its filesystem so that Badger can still
// compact and write its manifest when the data has filled the rest, and so
// that a drive sharing its filesystem with other things leaves them room.
// `node add --reserve` and `node set --reserve` choose it per drive.
const (
	DefaultReserve = 64 << 20
	// MinReserve holds a Badger compaction of the largest table and the
	// journal's growth step.
	MinReserve = 16 << 20
)

// smallDrive is how much room beyond the reserve a drive should have to
// be worth adding without a warning.
const smallDrive = 64 << 20

// candidate is a drive considered for a new copy.
type candidate struct {
	d       *drive
	free    int64
	used    int64
	device  string
	shuffle uint64
}

// pickDrives chooses up to n online drives, none in skip, with room for
// size bytes. It prefers the drives with the most free space, and it never
// puts two copies on one device while an unused device remains: first one
// drive per device not yet used (including the devices of the drives in
// used), then, only if that is not enough, drives on devices already used.
//
// The chosen drives are charged size bytes at once, so that writers
// placing chunks concurrently spread them instead of all picking the same
// emptiest drives.
//
// When no drive has room but one was skipped for lack of it, it waits for
// the reclaimer to give back what deletes left on the drives
// (waitReclaim) and tries once more.
func (m *Manager) pickDrives(n int, size int, skip map[uint32]bool, used []uint32) []*drive {
	out, full := m.pickDrivesOnce(n, size, skip, used)
	if len(out) == 0 && full && m.waitReclaim() {
		out, _ = m.pickDrivesOnce(n, size, skip, used)
	}
	return out
}

// pickDrivesOnce is pickDrives without waiting; full reports that a drive
// was left out for lack of room.
func (m *Manager) pickDrivesOnce(n int, size int, skip map[uint32]bool, used []uint32) (_ []*drive, full bool) {
	m.placeMu.Lock()
	defer m.placeMu.Unlock()
	var cands []candidate
	for _, d := range m.driveList() {
		if skip[d.num] || !d.placeable() {
			continue
		}
		// A reclaim running on the drive holds back what its round may write.
		free := d.freeBytes() - m.reclaimHeld(d.num)
		if free-d.reserve() < int64(size) {
			m.kickReclaim(d.num) // deletes may have left dead space to give back
			full = true
			continue
		}
		cands = append(cands, candidate{d: d, free: free, used: d.written.Load(), device: d.record().domain(), shuffle: rand.Uint64()})
	}
	// Drives on one device share its free space: one figure for all of
	// them, so that when they were measured at different moments (a
	// drive just added, others writing to the disk) the difference does
	// not decide.
	devFree := map[string]int64{}
	for _, c := range cands {
		devFree[c.device] = max(devFree[c.device], c.free)
	}
	for i := range cands {
		cands[i].free = devFree[cands[i].device]
	}
	// Most free first. On one shared filesystem free space is equal, so the
	// drive dhdfs has written least to comes first; drives within a few
	// chunks of each other are taken in random order, so that the copies of
	// one drive's chunks spread over all the others instead of always
	// pairing the same drives (a failed drive is then rebuilt from many).
	usedBucket := max(int64(size), 64<<10) * 16
	slices.SortFunc(cands, func(a, b candidate) int {
		const slack = 64 << 20 // free-space differences below this are noise
		if a.free-b.free > slack {
			return -1
		}
		if b.free-a.free > slack {
			return 1
		}
		if c := cmp.Compare(a.used/usedBucket, b.used/usedBucket); c != 0 {
			return c
		}
		return cmp.Compare(a.shuffle, b.shuffle)
	})
	devices := map[string]bool{}
	for _, num := range used {
		if d := m.driveByNum(num); d != nil {
			devices[d.record().domain()] = true
		}
	}
	var out []*drive
	taken := map[uint32]bool{}
	defer func() {
		for _, d := range out {
			d.written.Add(int64(size))
			d.free.Add(-int64(size))
		}
	}()
	for _, c := range cands {
		if len(out) == n {
			return out, full
		}
		if !devices[c.device] {
			devices[c.device] = true
			taken[c.d.num] = true
			out = append(out, c.d)
		}
	}
	for _, c := range cands {
		if len(out) == n {
			break
		}
		if !taken[c.d.num] {
			out = append(out, c.d)
		}
	}
	return out, full
}
