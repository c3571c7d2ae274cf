package nodes

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Journals on one device share a flush. A sync round appends a record to
// the journal of every drive it involves; when two drives are directories
// on one disk, two fdatasync calls cost that disk two cache flushes (1.8
// times one, measured). Instead the records are written and their
// writeback waited for (sync_file_range), and then one fdatasync flushes
// the device's cache, which holds every write that completed before it.
//
// That is only sound where both of these hold, which is why it is
// limited to ext4 and XFS:
//   - a record that overwrites blocks the file already has, within a size
//     already made durable, needs nothing but its data on the disk: no
//     metadata to commit. Journals grow their files ahead in zeros
//     (journalGrow) so that nearly every record is such an overwrite; a
//     record that grew its file flushes its own.
//   - fdatasync ends with a cache flush of the whole device, whether or not
//     it had metadata to commit: ext4_sync_file (a jbd2 commit with
//     REQ_PREFLUSH, or blkdev_issue_flush when barriers are on) and
//     xfs_file_fsync (blkdev_issue_flush when no log force flushed).
//
// Drives with the same st_dev are on one filesystem and so one device (an
// LVM or md device passes the flush to every disk below it).

// Filesystem magic numbers (statfs f_type) of the filesystems whose
// fdatasync is known to flush the device cache as described above.
const (
	ext4Magic = 0xef53
	xfsMagic  = 0x58465342
)

// flushDevice returns the device of dir's filesystem if journals there
// may share flushes, else 0.
func flushDevice(dir string) uint64 {
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return 0
	}
	if fs.Type != ext4Magic && fs.Type != xfsMagic {
		return 0
	}
	dev, err := DeviceOf(dir)
	if err != nil {
		return 0
	}
	return dev
}

// AppendAll appends recs[i] to js[i] and makes them all durable, as
// Append on each would, in parallel; errs[i] is js[i]'s error. Journals on
// one device share one cache flush (see above); if that flush fails, every
// record that relied on it fails too.
func AppendAll(js []*Journal, recs [][]byte) (errs []error) {
	errs = make([]error, len(js))
	groups := map[uint64][]int{}
	var work []func()
	for i, j := range js {
		if j.dev == 0 {
			work = append(work, func() { errs[i] = j.Append(recs[i]) })
			continue
		}
		groups[j.dev] = append(groups[j.dev], i)
	}
	for _, g := range groups {
		if len(g) == 1 {
			i := g[0]
			work = append(work, func() { errs[i] = js[i].Append(recs[i]) })
			continue
		}
		work = append(work, func() { appendShared(js, recs, g, errs) })
	}
	inParallel(work)
	return errs
}

// inParallel runs fns at the same time, the last on the calling
// goroutine, and returns when all have.
func inParallel(fns []func()) {
	if len(fns) == 0 {
		return
	}
	var wg sync.WaitGroup
	for _, fn := range fns[:len(fns)-1] {
		wg.Go(fn)
	}
	fns[len(fns)-1]()
	wg.Wait()
}

// appendShared appends to the journals js[i], i in group, all on one
// device, with one flush for the records that need no flush of their own.
func appendShared(js []*Journal, recs [][]byte, group []int, errs []error) {
	type member struct {
		i    int
		b    []byte
		own  bool // grew its file: flushes itself
		from int64
	}
	// One lock order for every caller: by directory.
	slices.SortFunc(group, func(a, b int) int { return strings.Compare(js[a].dir, js[b].dir) })
	var ms []member
	// Each journal stays locked until its record is durable or failed.
	// The writes are issued one after the other: issuing them from
	// goroutines of their own measured no faster, and cost hand-offs.
	for _, i := range group {
		j := js[i]
		j.mu.Lock()
		defer j.mu.Unlock()
		b, err := frame(recs[i])
		if err == nil {
			err = j.write(b)
		}
		if err == nil {
			err = writeback(j, j.off, int64(len(b)), unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE)
		}
		if errs[i] = err; err == nil {
			ms = append(ms, member{i: i, b: b, own: j.size > j.durable, from: j.off})
		}
	}
	// Every shared record's write must have completed before the flush
	// starts, or the flush does not cover it.
	leader := -1
	for k, m := range ms {
		j := js[m.i]
		if err := writeback(j, m.from, int64(len(m.b)), unix.SYNC_FILE_RANGE_WAIT_AFTER); err != nil {
			errs[m.i] = err
			continue
		}
		if !m.own && leader < 0 {
			leader = k
		}
	}
	var flush []func()
	for k, m := range ms {
		if errs[m.i] == nil && (m.own || k == leader) {
			flush = append(flush, func() { errs[m.i] = js[m.i].flush() })
		}
	}
	inParallel(flush)
	var shared error
	if leader >= 0 {
		shared = errs[ms[leader].i]
	}
	for _, m := range ms {
		if errs[m.i] == nil && !m.own && shared != nil {
			errs[m.i] = fmt.Errorf("sync journal: shared flush: %w", shared)
		}
		if errs[m.i] == nil {
			js[m.i].off += int64(len(m.b))
		}
	}
}

// writeback runs sync_file_range over a record of j. j.mu is held.
func writeback(j *Journal, off, n int64, flags int) error {
	if err := unix.SyncFileRange(int(j.f.Fd()), off, n, flags); err != nil {
		return fmt.Errorf("write back journal: %w", err)
	}
	return nil
}
