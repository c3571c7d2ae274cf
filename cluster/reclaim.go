package cluster

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dhdfs/dhdfs/nodes"
)

// The reclaimer gives back the space that deleted and overwritten chunks
// leave in the drives' stores, in the background, without `dhdfs gc`.
//
// A Badger store frees space a value-log file at a time (nodes.Reclaimer):
// a delete only makes bytes dead, and they come back when the file
// holding them is rewritten without them. The reclaimer watches each
// drive's dead bytes (the store's size less the chunks it holds; the
// store keeps that count) and reclaims a drive:
//   - when its dead bytes have grown by the threshold since its last
//     reclaim left them (Options.ReclaimThreshold, or a quarter of its
//     live data if more), measured every Options.ReclaimInterval, and
//     sooner when the store's count of deleted bytes says they may have
//     (a counter, read every second); files at least half dead are
//     rewritten;
//   - at once when the drive is short of space: placement found it too
//     full for a chunk, or its free space beyond the reserve fell under
//     shortBytes; checked every second, and reclaimed as soon as deletes
//     made a quarter of a value-log file dead since its last reclaim
//     (deltaFor). Files are then rewritten down to a quarter dead, as far
//     as the free space allows their live part to be copied; if that gave
//     little back, the file being written is closed and reclaimed too
//     (Rotate: a store may be busy for a moment), at most every
//     rotateGap. A placement that found no room waits for this
//     (waitReclaim);
//   - deeply when a short drive holds dead bytes while a placement waits
//     for room, however little of each file is dead: files down to a
//     sixteenth dead (deepDead), until the drive is no longer short, and
//     then the file being written too when the store rotates for free
//     (not nodes.Space.RotateBusy).
//
// One drive at a time, one file per round. Between rounds it pauses
// (reclaimPause). Unless the drive is short, while the foreground writes
// more than busyRate it pauses three times as long as the round took
// (reclaim takes a quarter of the disk's time), as long when behind (dead
// bytes grown past twice the threshold: half), and no longer when far
// behind (four times, or more dead bytes than live ones). The space a
// round may write is held back from placement while it runs.
type reclaimer struct {
	m         *Manager
	interval  time.Duration
	threshold int64
	kick      chan struct{}

	mu     sync.Mutex
	stores map[uint32]nodes.Reclaimer // guarded by mu: each drive's own store
	short  map[uint32]bool            // guarded by mu: found short by placement
	held   map[uint32]int64           // guarded by mu: bytes a running round may write
	// started and finished number the checks (guarded by mu); checked is
	// closed and replaced when one finishes, for waitReclaim.
	started, finished uint64
	checked           chan struct{}

	// Used only by the reclaimer's goroutine.
	drives   map[uint32]*driveReclaim
	sampleAt time.Time
	sampleW  int64
	rate     float64 // bytes per second placed on drives lately

	passes  atomic.Int64
	freed   atomic.Int64
	waiting atomic.Int64 // placements in waitReclaim
}

// errYield ends a pass that placements waiting for room should not wait
// behind.
var errYield = errors.New("reclaim pass yields to a placement waiting for room")

// errEnough ends a deep pass early (see deepDead).
var errEnough = errors.New("reclaim pass gave back enough")

// driveReclaim is what the reclaimer remembers about a drive.
type driveReclaim struct {
	checked  time.Time // last look at its space
	passed   time.Time // last reclaim
	rotated  time.Time // last reclaim that rotated
	baseline int64     // dead bytes its last reclaim left
	// stranded is what its last deep pass that ran out of files to
	// rewrite left dead: not worth a deep pass until more die.
	stranded int64
	total    int64 // size of its filesystem, from the last check
	// trigger is the store's Deleted count at which its dead bytes will
	// have grown past its threshold, as last measured: a cheap test, every
	// second, of whether to measure again before the interval is up.
	trigger int64
}

const (
	defaultReclaimThreshold = 256 << 20
	// reclaimTick is how often drives short of space are checked.
	reclaimTick = time.Second
	// reclaimDelta is how many new dead bytes make a short drive reclaim:
	// a quarter of a value-log file, at most 16 MiB (see deltaFor).
	reclaimDelta = 16 << 20
	// reclaimGap spaces reclaims of a short drive.
	reclaimGap = 2 * time.Second
	// rotateGap spaces reclaims that rotate a short drive's value log,
	// which makes the drive busy for a moment (see nodes.ReclaimOptions).
	rotateGap = 30 * time.Second
	// deepDead is the dead share down to which a deep pass rewrites
	// files. A drive filled by files written side by side holds each of
	// them in every one of its files: deleting one of six leaves each file
	// a sixth dead, under an urgent pass's quarter, and without a deeper
	// pass a write would fail until gc although the delete made room.
	// Rewriting a file a sixteenth dead copies fifteen bytes per byte it
	// gives back, which a write that otherwise fails is worth; deep passes
	// run only then, and end once the drive is no longer short, no write
	// waits any more, or they gave back deepStep.
	deepDead = 1.0 / 16
	// deepStep is what a deep pass gives back before it lets the waiting
	// write go on (which asks again if it needs more): the write then
	// waits for seconds, not for a big drive's worth of rewriting.
	deepStep = 64 << 20
	// deepMin is the dead bytes, beyond those a deep pass left behind,
	// that make another one worth running: about a chunk.
	deepMin = 1 << 20
	// reclaimWait bounds how long a placement that found no room waits
	// for the reclaimer.
	reclaimWait = 10 * time.Second
	// reclaimPause separates rounds.
	reclaimPause = 100 * time.Millisecond
	// reclaimMaxPause bounds the pause between rounds.
	reclaimMaxPause = 10 * time.Second
	// busyRate is the rate of writes to the drives above which the
	// foreground counts as busy.
	busyRate = 16 << 20
)

// initReclaimer prepares the reclaimer if opts ask for it. It must run
// before the drives are opened: it learns each drive's own store as it
// is opened (a maintenance task, it talks to the store directly rather
// than through the wrappers that time, count or fault chunk calls).
func (m *Manager) initReclaimer() {
	if m.opts.ReclaimInterval <= 0 {
		return
	}
	r := &reclaimer{m: m, interval: m.opts.ReclaimInterval, threshold: m.opts.ReclaimThreshold,
		kick: make(chan struct{}, 1), stores: map[uint32]nodes.Reclaimer{}, short: map[uint32]bool{},
		held: map[uint32]int64{}, drives: map[uint32]*driveReclaim{}, checked: make(chan struct{})}
	if r.threshold <= 0 {
		r.threshold = defaultReclaimThreshold
	}
	outer := m.opts.WrapStore
	m.opts.WrapStore = func(rec DriveRecord, s nodes.Store) nodes.Store {
		if rs, ok := s.(nodes.Reclaimer); ok {
			r.mu.Lock()
			r.stores[rec.Num] = rs
			r.mu.Unlock()
		}
		if outer != nil {
			return outer(rec, s)
		}
		return s
	}
	m.rc = r
}

// startReclaimer runs the reclaimer until Close.
func (m *Manager) startReclaimer() {
	r := m.rc
	if r == nil {
		return
	}
	m.loop(reclaimTick, r.kick, 0, r.check)
}

// kickReclaim tells the reclaimer that drive num is short of space: it
// looks at the drive at once, and reclaims it if deletes left dead bytes.
// Cheap enough for every placement that finds the drive full.
func (m *Manager) kickReclaim(num uint32) {
	r := m.rc
	if r == nil {
		return
	}
	r.mu.Lock()
	r.short[num] = true
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// waitReclaim is for a placement that found no drive with room: like
// ext4, which commits its journal to release freed blocks and retries an
// allocation that failed with ENOSPC, it has the reclaimer look at the
// short drives at once and waits until it has (at most reclaimWait, and
// not past Close). It reports whether the reclaimer reclaimed a drive
// meanwhile, in which case placement should try again. Without dead
// space to give back it costs one look at each short drive's space.
func (m *Manager) waitReclaim() bool {
	r := m.rc
	if r == nil {
		return false
	}
	passes := r.passes.Load()
	r.waiting.Add(1)
	defer r.waiting.Add(-1)
	r.mu.Lock()
	target := r.started + 1 // a check that starts after now
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
	timeout := time.NewTimer(reclaimWait)
	defer timeout.Stop()
	for {
		r.mu.Lock()
		done, ch := r.finished >= target, r.checked
		r.mu.Unlock()
		if done {
			return r.passes.Load() > passes
		}
		select {
		case <-ch:
		case <-timeout.C:
			return r.passes.Load() > passes
		case <-m.done:
			return false
		}
	}
}

// reclaimHeld returns the bytes a running reclaim may write on drive num,
// which placement leaves free.
func (m *Manager) reclaimHeld(num uint32) int64 {
	r := m.rc
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.held[num]
}

// ReclaimStats says what the background reclaimer did since the pool was
// opened.
type ReclaimStats struct {
	Passes int64 `json:"passes"`
	Freed  int64 `json:"freed_bytes"`
}

// ReclaimStats returns what the reclaimer did; zero if it does not run.
func (m *Manager) ReclaimStats() ReclaimStats {
	if m.rc == nil {
		return ReclaimStats{}
	}
	return ReclaimStats{Passes: m.rc.passes.Load(), Freed: m.rc.freed.Load()}
}

// storeFor returns drive d's own store if the drive is usable and its
// store can reclaim.
func (r *reclaimer) storeFor(d *drive) nodes.Reclaimer {
	if d.usable() == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stores[d.num]
}

// takeShort reports whether placement found drive num short since the
// last call, and forgets it.
func (r *reclaimer) takeShort(num uint32) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.short[num]
	delete(r.short, num)
	return s
}

func (r *reclaimer) setHeld(num uint32, n int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n > 0 {
		r.held[num] = n
	} else {
		delete(r.held, num)
	}
}

// shortBytes is the free space beyond the reserve under which a drive
// counts as short: 5% of its filesystem, between 4 MiB and 1 GiB.
func shortBytes(total int64) int64 {
	return min(max(total/20, 4<<20), 1<<30)
}

// deltaFor returns the new dead bytes that make a short drive with
// value-log files of unit bytes reclaim: less could not empty a file a
// quarter dead.
func deltaFor(unit int64) int64 {
	return min(max(unit/4, 1<<20), reclaimDelta)
}

// check looks at the drives and reclaims those that need it, one after
// the other: first the short ones, then (waitReclaim waits for no more)
// those due for their periodic look.
func (r *reclaimer) check(ctx context.Context) {
	r.mu.Lock()
	r.started++
	n := r.started
	r.mu.Unlock()
	finish := func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.finished < n {
			r.finished = n
			close(r.checked)
			r.checked = make(chan struct{})
		}
	}
	defer finish()
	now := time.Now()
	r.writeRate()
	var due []*drive
	for _, d := range r.m.driveList() {
		if ctx.Err() != nil {
			return
		}
		rs := r.storeFor(d)
		if rs == nil {
			r.takeShort(d.num)
			continue
		}
		st := r.drives[d.num]
		if st == nil {
			st = &driveReclaim{}
			r.drives[d.num] = st
		}
		if st.total == 0 || now.Sub(st.checked) >= r.interval {
			if _, total, err := d.record().at().Space(); err == nil {
				st.total = total
			}
		}
		switch {
		case r.takeShort(d.num) || d.freeBytes()-r.m.reclaimHeld(d.num)-d.reserve() < shortBytes(st.total):
			r.consider(ctx, d, rs, st, true)
		case now.Sub(st.checked) >= r.interval || (st.trigger > 0 && rs.Deleted() >= st.trigger):
			due = append(due, d)
		}
	}
	finish()
	for _, d := range due {
		if ctx.Err() != nil || r.waiting.Load() > 0 {
			return // a placement waits: the next check starts with the short drives
		}
		if rs := r.storeFor(d); rs != nil {
			r.consider(ctx, d, rs, r.drives[d.num], false)
		}
	}
}

// consider measures drive d's dead bytes and reclaims it if they grew
// past its threshold since its last reclaim, or, if it is short, by a
// quarter of a value-log file; or deeply, if it is short while a write
// waits for room (see deepDead).
func (r *reclaimer) consider(ctx context.Context, d *drive, rs nodes.Reclaimer, st *driveReclaim, short bool) {
	now := time.Now()
	st.checked = now
	sp, err := rs.Space()
	if err != nil {
		return // the drive's errors are for its readers and writers to report
	}
	dead := sp.Dead()
	if dead < st.baseline {
		st.baseline = dead // gc, or a reopen, gave space back
	}
	st.stranded = min(st.stranded, dead)
	grown := dead - st.baseline
	deep := short && r.waiting.Load() > 0 && dead-st.stranded >= deepMin
	urgent := deep || short && grown >= deltaFor(sp.Unit) && now.Sub(st.passed) >= reclaimGap
	limit := r.limit(sp)
	if !urgent && grown < limit {
		st.trigger = sp.Deleted + limit - grown
		return
	}
	// How much of the time the pass may take while the foreground writes:
	// the further behind, the more.
	duty := 3 // pauses three times as long as each round: a quarter
	switch {
	case urgent || grown >= 4*limit || dead >= max(sp.Live, 2*limit):
		duty = 0
	case grown >= 2*limit:
		duty = 1
	}
	r.pass(ctx, d, rs, sp, st, urgent, deep, duty)
}

// limit returns the dead bytes a drive may gather beyond what its last
// reclaim left: the threshold, or a quarter of its live data if more.
func (r *reclaimer) limit(sp nodes.Space) int64 {
	return max(r.threshold, sp.Live/4)
}

// pass reclaims drive d. Urgent passes (a short drive) rewrite files down
// to a quarter dead, deep ones to deepDead, as the room to copy their
// live part allows, and are not throttled; a deep pass ends early (see
// deepDead). Others pause duty times as long as each round took while the
// foreground writes.
func (r *reclaimer) pass(ctx context.Context, d *drive, rs nodes.Reclaimer, sp nodes.Space, st *driveReclaim, urgent, deep bool, duty int) {
	unit := max(sp.Unit, 1)
	// A round copies the live part of a file, at most (1-minDead)·unit
	// bytes, before it deletes the file: that must fit in the free space.
	// Normal passes leave the reserve alone; urgent ones may use half of
	// it (the other half stays for Badger's own compactions).
	reserve := d.reserve()
	free := d.freeBytes() - reserve
	if urgent {
		free += reserve / 2
	}
	minDead := 0.5
	switch {
	case deep:
		minDead = deepDead
	case urgent:
		minDead = 0.25
	}
	minDead = max(minDead, 1-float64(free)/float64(unit))
	if minDead > 0.95 {
		st.passed, st.baseline = time.Now(), sp.Dead()
		st.trigger = sp.Deleted + r.limit(sp)
		r.m.log.Warn("no room to reclaim space", "drive", d.record().Name, "free", d.freeBytes(), "dead", sp.Dead())
		return
	}
	hold := int64(math.Ceil((1 - minDead) * float64(unit)))
	r.setHeld(d.num, hold)
	defer r.setHeld(d.num, 0)
	roundStart := time.Now()
	enough := false // a deep pass ended before it ran out of files
	between := func(ctx context.Context, sofar nodes.ReclaimResult) error {
		if deep {
			d.freeStamp.Store(0)
			if d.freeBytes()-reserve >= shortBytes(st.total) || sofar.Freed >= deepStep || r.waiting.Load() == 0 {
				enough = true
				return errEnough
			}
			return nil // a write waits
		}
		if urgent {
			return sleepCtx(ctx, reclaimPause)
		}
		if r.waiting.Load() > 0 {
			return errYield // short drives first; this one resumes later
		}
		// While the foreground writes, reclaim's rounds compete with it
		// for the disk: they take a share of the time.
		pause := reclaimPause
		if r.writeRate() >= busyRate {
			pause = min(max(pause, time.Duration(duty)*time.Since(roundStart)), reclaimMaxPause)
		}
		if err := sleepCtx(ctx, pause); err != nil {
			return err
		}
		roundStart = time.Now()
		return nil
	}
	var pace func(context.Context) error
	if !urgent {
		pace = (&syncPacer{m: r.m, waiting: &r.waiting}).pace
	}
	start := time.Now()
	res, err := rs.Reclaim(ctx, nodes.ReclaimOptions{MinDead: minDead, Between: between, Pace: pace})
	after, serr := rs.Space()
	if serr != nil {
		after = sp
	}
	// What a short drive's in-place pass could not give back may sit in
	// the file being written (the chunks of a write that failed for lack
	// of space, say): close it and reclaim again, at most every rotateGap
	// (each rotation leaves a file partly filled, and a store that must
	// reopen to do it is busy for a moment); while a write waits for room,
	// whenever the store can rotate for free (not RotateBusy).
	gap := time.Since(st.rotated) >= rotateGap
	if urgent && err == nil && after.Dead() >= deepMin && (deep && (gap || !after.RotateBusy) || res.Freed < deltaFor(unit) && gap) {
		st.rotated = time.Now()
		var more nodes.ReclaimResult
		more, err = rs.Reclaim(ctx, nodes.ReclaimOptions{MinDead: minDead, Between: between, Pace: pace, Rotate: true})
		res.Rounds += more.Rounds
		res.Freed += more.Freed
		if sp, serr := rs.Space(); serr == nil {
			after = sp
		}
	}
	st.passed = time.Now()
	if deep && !enough && err == nil {
		st.stranded = after.Dead()
	}
	if errors.Is(err, errEnough) {
		err = nil
	}
	if errors.Is(err, errYield) {
		st.checked = time.Time{} // look again at the next check
		err = nil
	} else {
		// What this pass could not give back; dead bytes that deletes
		// made while it ran (after it settled) are for the next one.
		made := max(after.Deleted-sp.Deleted, 0)
		st.baseline = max(after.Dead()-made, 0)
		st.trigger = after.Deleted + r.limit(after) - made
	}
	d.freeStamp.Store(0) // placement measures the free space afresh
	r.passes.Add(1)
	r.freed.Add(max(res.Freed, 0))
	name := d.record().Name
	// A drive closed or busy meanwhile (taken offline, revived, gc) is
	// not a problem; the I/O path reports real failures of the drive.
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, nodes.ErrClosed) && !errors.Is(err, nodes.ErrBusy) {
		r.m.log.Warn("reclaim space", "drive", name, "err", err)
	}
	r.m.log.Info("reclaimed space", "drive", name, "urgent", urgent, "rounds", res.Rounds, "freed", res.Freed,
		"used", after.Used, "live", after.Live, "took", time.Since(start).Round(time.Millisecond))
}

// syncPacer makes a reclaim pass give way to fsyncs. An fsync waits for
// the disk, and a reclaim's reads and writes queued on the same disk wait
// in front of it: 200-byte appends with fsync ran at half their speed
// during a pass. So while the foreground syncs (it called Sync within
// syncQuiet), the pass works in bursts of at most paceBurst and then
// waits until the syncs pause for syncQuiet, or paceWait has gone by:
// under fsyncs that never pause it still gets a tenth of the time.
// Urgent passes (a drive short of space) are not paced, and no pass is
// while a write waits for room (waiting): then the foreground needs the
// space more than the disk.
type syncPacer struct {
	m       *Manager
	waiting *atomic.Int64 // placements waiting for room (reclaimer.waiting)
	burst   time.Time     // start of the current burst of work; zero: none
}

// needed reports whether a write waits for the space this pass gives.
func (p *syncPacer) needed() bool { return p.waiting != nil && p.waiting.Load() > 0 }

const (
	syncQuiet = 50 * time.Millisecond
	paceBurst = 10 * time.Millisecond
	paceWait  = 90 * time.Millisecond
)

func (p *syncPacer) pace(ctx context.Context) error {
	now := time.Now()
	if p.needed() || now.Sub(time.Unix(0, p.m.syncAt.Load())) >= syncQuiet {
		p.burst = time.Time{}
		return nil
	}
	if p.burst.IsZero() {
		p.burst = now
	}
	if now.Sub(p.burst) < paceBurst {
		return nil
	}
	deadline := now.Add(paceWait)
	for !p.needed() {
		quiet := time.Unix(0, p.m.syncAt.Load()).Add(syncQuiet)
		if !quiet.After(time.Now()) || !deadline.After(time.Now()) {
			break
		}
		// In steps, so that a write starting to wait for room is seen.
		if err := sleepCtx(ctx, min(time.Until(quiet), time.Until(deadline), 10*time.Millisecond)); err != nil {
			return err
		}
	}
	p.burst = time.Now()
	return nil
}

// writeRate returns the bytes per second placement sent to the drives
// lately, measured over at least half a second.
func (r *reclaimer) writeRate() float64 {
	now := time.Now()
	var w int64
	for _, d := range r.m.driveList() {
		w += d.written.Load()
	}
	if r.sampleAt.IsZero() {
		r.sampleAt, r.sampleW = now, w
		return 0
	}
	if dt := now.Sub(r.sampleAt); dt >= 500*time.Millisecond {
		r.rate = max(float64(w-r.sampleW), 0) / dt.Seconds()
		r.sampleAt, r.sampleW = now, w
	}
	return r.rate
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
