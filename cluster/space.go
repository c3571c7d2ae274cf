package cluster

// PoolSpace is the pool's raw space, each filesystem under its online
// drives counted once however many drives share it.
type PoolSpace struct {
	// Total is the size of the filesystems.
	Total int64 `json:"total_bytes"`
	// Free is their free space, as statfs reports it.
	Free int64 `json:"free_bytes"`
	// Avail is what new chunks can use: on each filesystem that a drive
	// taking new chunks is on, its free space less the reserve placement
	// keeps free (its reserve) and what a running reclaim holds. Space
	// that deletes left dead in the stores is not counted until it is
	// reclaimed, since writes cannot use it before.
	Avail int64 `json:"avail_bytes"`
}

// Space measures the pool's raw space. Divided by the replication factor
// it is what statfs (df) and status show.
func (m *Manager) Space() PoolSpace {
	var sp PoolSpace
	type fs struct {
		free, avail int64
		placeable   bool
	}
	seen := map[string]*fs{}
	for _, d := range m.driveList() {
		if d.usable() == nil {
			continue
		}
		rec := d.record()
		f := seen[rec.domain()]
		if f == nil {
			_, total, err := rec.at().Space()
			if err != nil {
				continue
			}
			f = &fs{free: d.freeBytes()}
			seen[rec.domain()] = f
			sp.Total += total
			sp.Free += f.free
		}
		if d.placeable() {
			// Drives sharing a filesystem see the same free space, and
			// placement stops them all at the same reserve.
			f.placeable = true
			f.avail = max(f.avail, d.freeBytes()-m.reclaimHeld(d.num)-d.reserve())
		}
	}
	for _, f := range seen {
		if f.placeable {
			sp.Avail += max(f.avail, 0)
		}
	}
	return sp
}
