package main

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The small-writes crash test: writers make many small overwrites and
// appends, each made durable by fsync, fdatasync or an O_DSYNC/O_SYNC
// descriptor, while the mount is killed with SIGKILL at a random moment.
// A model records, for every file, the content its last acknowledged
// sync made durable and the one operation each writer has in flight. After
// the kill every byte must be what the model allows: the durable byte, or
// at a position the operation in flight covers, the byte it writes there.

// smallExtent is a byte range an operation in flight may have written.
type smallExtent struct {
	off  int
	data []byte
}

// smallOp is one operation in flight: writes (one or a few, then one
// sync) or a truncation, then a sync.
type smallOp struct {
	desc    string
	extents []smallExtent
	trunc   int // new size of a truncation; -1 when the operation writes
}

// end is the size the file has once the operation completes, given its
// size before.
func (o *smallOp) end(size int) int {
	if o.trunc >= 0 {
		return o.trunc
	}
	for _, x := range o.extents {
		size = max(size, x.off+len(x.data))
	}
	return size
}

// smallFile models one file: the content its last acknowledged sync left
// and the operation each writer has in flight on it.
type smallFile struct {
	path    string
	durable []byte
	pending map[int]*smallOp // by writer
}

// smallModel is shared by the writers of one test.
type smallModel struct {
	mu    sync.Mutex
	files []*smallFile
}

func (m *smallModel) begin(f *smallFile, w int, op *smallOp) {
	m.mu.Lock()
	f.pending[w] = op
	m.mu.Unlock()
}

// done records that op's sync returned: what it wrote is durable.
func (m *smallModel) done(f *smallFile, w int, op *smallOp) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(f.pending, w)
	f.durable = applySmallOp(f.durable, op)
}

// applySmallOp returns content with op applied, as the file reads after it.
func applySmallOp(content []byte, op *smallOp) []byte {
	if op.trunc >= 0 {
		if op.trunc <= len(content) {
			return content[:op.trunc:op.trunc]
		}
		return append(bytes.Clone(content), make([]byte, op.trunc-len(content))...)
	}
	out := bytes.Clone(content)
	if end := op.end(len(out)); end > len(out) {
		out = append(out, make([]byte, end-len(out))...)
	}
	for _, x := range op.extents {
		copy(out[x.off:], x.data)
	}
	return out
}

// check compares got, the file as read after the crash, with what the
// model allows, and returns a description of the first difference.
func (f *smallFile) check(got []byte, present bool) error {
	if !present {
		return errors.New("the file is gone")
	}
	// Sizes: a truncation in flight leaves the old or the new size; writes
	// in flight any size from the durable one to the largest they reach
	// (a write may be partly applied).
	lo, hi := len(f.durable), len(f.durable)
	truncs := []int{}
	for _, op := range f.pending {
		if op.trunc >= 0 {
			truncs = append(truncs, op.trunc)
			continue
		}
		hi = max(hi, op.end(len(f.durable)))
	}
	sizeOK := len(got) >= lo && len(got) <= hi
	for _, t := range truncs {
		sizeOK = sizeOK || len(got) == t
	}
	if !sizeOK {
		return fmt.Errorf("size %d; the last fsync left %d, and the operations in flight allow %d to %d or %v (%s)",
			len(got), len(f.durable), lo, hi, truncs, f.pendingDesc())
	}
	// Bytes: the durable byte, or one an operation in flight writes there.
	// Zeros that a write past the end leaves before it count as written.
	for i, b := range got {
		if i < len(f.durable) && b == f.durable[i] {
			continue
		}
		if f.allows(i, b) {
			continue
		}
		old := "past the durable end"
		if i < len(f.durable) {
			old = fmt.Sprintf("%#02x", f.durable[i])
		}
		j := i
		for j < len(got) && !(j < len(f.durable) && got[j] == f.durable[j]) && !f.allows(j, got[j]) {
			j++
		}
		return fmt.Errorf("size %d (durable %d): bytes [%d, %d) are neither what the last fsync left nor what an operation in flight wrote: "+
			"byte %d is %#02x, durable %s; in flight: %s", len(got), len(f.durable), i, j, i, b, old, f.pendingDesc())
	}
	return nil
}

// allows reports whether an operation in flight may have left b at i.
func (f *smallFile) allows(i int, b byte) bool {
	for _, op := range f.pending {
		if op.trunc >= 0 {
			continue
		}
		for _, x := range op.extents {
			if i >= x.off && i < x.off+len(x.data) && x.data[i-x.off] == b {
				return true
			}
		}
		// Past the durable end, a write that starts further on leaves a
		// gap of zeros before it.
		if b == 0 && i >= len(f.durable) {
			for _, x := range op.extents {
				if x.off > i && len(x.data) > 0 {
					return true
				}
			}
		}
	}
	return false
}

func (f *smallFile) pendingDesc() string {
	if len(f.pending) == 0 {
		return "nothing"
	}
	var parts []string
	for w, op := range f.pending {
		parts = append(parts, fmt.Sprintf("writer %d: %s", w, op.desc))
	}
	return strings.Join(parts, "; ")
}

// smallWriter writes to its own files and to its region of a file the
// writers share, until an operation fails (the mount was killed).
type smallWriter struct {
	id     int
	rng    *rand.Rand
	m      *smallModel
	own    []*smallFile
	shared *smallFile
	lo, hi int // its region of the shared file
	fds    map[*smallFile]*smallFD
	ops    int
	stats  map[string]int
}

// smallFD is an open descriptor and how it makes writes durable.
type smallFD struct {
	f      *os.File
	flags  int // O_APPEND, O_DSYNC, O_SYNC
	synced bool
}

// smallSize returns a write size from 1 byte to 16 KiB, most of them small.
func smallSize(rng *rand.Rand) int {
	switch rng.IntN(4) {
	case 0:
		return 1 + rng.IntN(16)
	case 1:
		return 1 + rng.IntN(512)
	case 2:
		return 1 + rng.IntN(4096)
	default:
		return 1 + rng.IntN(16<<10)
	}
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// fd returns an open descriptor on f, opening one with random flags (or
// reopening) now and then.
func (w *smallWriter) fd(f *smallFile, appendOK bool) (*smallFD, error) {
	d := w.fds[f]
	if d != nil && (d.flags&os.O_APPEND == 0 || appendOK) && w.rng.IntN(20) != 0 {
		return d, nil
	}
	if d != nil {
		delete(w.fds, f)
		if err := d.f.Close(); err != nil {
			return nil, err
		}
	}
	flags := 0
	switch r := w.rng.IntN(10); {
	case r < 2 && appendOK:
		flags = os.O_APPEND
	case r < 3:
		flags = syscall.O_DSYNC
	case r < 4:
		flags = os.O_SYNC
	}
	file, err := os.OpenFile(f.path, os.O_RDWR|flags, 0)
	if err != nil {
		return nil, err
	}
	d = &smallFD{f: file, flags: flags, synced: flags&(syscall.O_DSYNC|os.O_SYNC) != 0}
	w.fds[f] = d
	return d, nil
}

func (w *smallWriter) closeAll() {
	for _, d := range w.fds {
		d.f.Close()
	}
	w.fds = map[*smallFile]*smallFD{}
}

// sync makes what op did through d durable: nothing more to do after
// writes on a synchronous descriptor, else fsync or fdatasync (O_SYNC does
// not cover ftruncate).
func (w *smallWriter) sync(d *smallFD, op *smallOp) error {
	if d.synced && op.trunc < 0 {
		op.desc += ", O_DSYNC/O_SYNC"
		return nil
	}
	if w.rng.IntN(2) == 0 {
		op.desc += ", fdatasync"
		w.stats["fdatasync"]++
		return syscall.Fdatasync(int(d.f.Fd()))
	}
	op.desc += ", fsync"
	w.stats["fsync"]++
	return d.f.Sync()
}

// step runs one operation and its sync; an error means the mount is gone.
func (w *smallWriter) step() error {
	w.ops++
	if w.rng.IntN(5) == 0 {
		return w.stepShared()
	}
	f := w.own[w.rng.IntN(len(w.own))]
	w.m.mu.Lock()
	size := len(f.durable) // only this writer changes f
	w.m.mu.Unlock()
	op := &smallOp{trunc: -1}
	var d *smallFD
	var err error
	r := w.rng.IntN(100)
	switch {
	case r < 5 && size > 0: // truncate a little off the end
		op.trunc = size - min(size, smallSize(w.rng))
		op.desc = fmt.Sprintf("truncate %d to %d", size, op.trunc)
		if d, err = w.fd(f, false); err != nil {
			return err
		}
		w.m.begin(f, w.id, op)
		err = d.f.Truncate(int64(op.trunc))
		w.stats["truncate"]++
	case r < 10: // write past the end, leaving a gap
		gap := 1 + w.rng.IntN(20<<10)
		x := smallExtent{off: size + gap, data: randomBytes(w.rng, smallSize(w.rng))}
		op.extents = []smallExtent{x}
		op.desc = fmt.Sprintf("write [%d, %d) past the end %d", x.off, x.off+len(x.data), size)
		if d, err = w.fd(f, false); err != nil {
			return err
		}
		w.m.begin(f, w.id, op)
		_, err = d.f.WriteAt(x.data, int64(x.off))
		w.stats["write past end"]++
	case r < 40: // append: O_APPEND write or pwrite at the end
		if d, err = w.fd(f, true); err != nil {
			return err
		}
		x := smallExtent{off: size, data: randomBytes(w.rng, smallSize(w.rng))}
		op.extents = []smallExtent{x}
		w.m.begin(f, w.id, op)
		if d.flags&os.O_APPEND != 0 {
			op.desc = fmt.Sprintf("O_APPEND write of %d at %d", len(x.data), x.off)
			_, err = d.f.Write(x.data)
		} else {
			op.desc = fmt.Sprintf("append [%d, %d)", x.off, x.off+len(x.data))
			_, err = d.f.WriteAt(x.data, int64(x.off))
		}
		w.stats["append"]++
	default: // one to three overwrites inside the file, the last may run past the end
		if d, err = w.fd(f, false); err != nil {
			return err
		}
		n := 1
		if w.rng.IntN(4) == 0 {
			n += 1 + w.rng.IntN(2)
		}
		for range n {
			off := 0
			if size > 0 {
				off = w.rng.IntN(size)
			}
			x := smallExtent{off: off, data: randomBytes(w.rng, smallSize(w.rng))}
			op.extents = append(op.extents, x)
		}
		// Stay inside the file unless a coin says otherwise.
		if w.rng.IntN(4) != 0 {
			for i := range op.extents {
				x := &op.extents[i]
				x.data = x.data[:max(min(len(x.data), size-x.off), 0)]
			}
		}
		var parts []string
		for _, x := range op.extents {
			parts = append(parts, fmt.Sprintf("[%d, %d)", x.off, x.off+len(x.data)))
		}
		op.desc = fmt.Sprintf("overwrite %s of %d bytes", strings.Join(parts, " "), size)
		w.m.begin(f, w.id, op)
		for _, x := range op.extents {
			if _, err = d.f.WriteAt(x.data, int64(x.off)); err != nil {
				break
			}
		}
		w.stats["overwrite"] += n
	}
	if err == nil {
		err = w.sync(d, op)
	}
	if err != nil {
		return err
	}
	w.m.done(f, w.id, op)
	return nil
}

// stepShared overwrites part of the writer's region of the shared file,
// whose chunks the other writers' regions share.
func (w *smallWriter) stepShared() error {
	f := w.shared
	d, err := w.fd(f, false)
	if err != nil {
		return err
	}
	off := w.lo + w.rng.IntN(w.hi-w.lo)
	x := smallExtent{off: off, data: randomBytes(w.rng, min(smallSize(w.rng), w.hi-off))}
	op := &smallOp{trunc: -1, extents: []smallExtent{x},
		desc: fmt.Sprintf("overwrite [%d, %d) of the shared file", x.off, x.off+len(x.data))}
	w.m.begin(f, w.id, op)
	if _, err := d.f.WriteAt(x.data, int64(x.off)); err != nil {
		return err
	}
	w.stats["shared overwrite"]++
	if err := w.sync(d, op); err != nil {
		return err
	}
	w.m.done(f, w.id, op)
	return nil
}

// newSmallFile creates path with random content written in pieces, makes
// it and its name durable, and adds it to the model.
func (m *smallModel) newSmallFile(t *testing.T, rng *rand.Rand, path string, size int) *smallFile {
	t.Helper()
	data := randomBytes(rng, size)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(data); {
		n := min(len(data)-off, 1+rng.IntN(40<<10))
		if _, err := f.Write(data[off : off+n]); err != nil {
			t.Fatal(err)
		}
		off += n
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		t.Fatal(err)
	}
	sf := &smallFile{path: path, durable: data, pending: map[int]*smallOp{}}
	m.mu.Lock()
	m.files = append(m.files, sf)
	m.mu.Unlock()
	return sf
}

// fsckClean runs dhdfs fsck on the unmounted pool: no problem, and no
// chunk with fewer copies than it should have (every drive is online).
func fsckClean(t *testing.T, e *env, round int) {
	t.Helper()
	out, errs, code := e.run(nil, "fsck")
	if code != 0 || !strings.Contains(out, ": 0 problems") || !strings.Contains(out, "; 0 chunks under-replicated.") {
		t.Fatalf("round %d: fsck after the kill: exit %d\n%s%s", round, code, out, errs)
	}
}

// crashRounds is the number of kills a crash test makes: def, or
// DHDFS_CRASH_SEEDS.
func crashRounds(def int) int {
	if v, err := strconv.Atoi(os.Getenv("DHDFS_CRASH_SEEDS")); err == nil && v > 0 {
		return v
	}
	return def
}

// TestCrashSmallWrites kills the mount with SIGKILL while writers make
// small random overwrites, appends, writes past the end and truncations,
// each followed by fsync, fdatasync, or done through an O_DSYNC or O_SYNC
// descriptor, on their own files and on disjoint regions of one file
// whose chunks they share. After each kill: fsck finds no problem and no
// under-replicated chunk, and every file, those of earlier rounds
// included, is byte for byte what its last acknowledged sync left, except
// where an operation in flight wrote, where each byte is the old one or
// the new one (a write may be partly applied). Every third round kills the next mount too, soon after it
// starts. DHDFS_CRASH_SEEDS=N makes N rounds instead of 8.
func TestCrashSmallWrites(t *testing.T) {
	rounds := crashRounds(8)
	const writers = 3
	e := newEnv(t)
	e.ok("init", "--chunk-size", "64KiB")
	e.drives(3)
	mnt := e.mountDir()
	m := &smallModel{}
	var ws []*smallWriter
	start := time.Now()
	for round := 1; round <= rounds; round++ {
		rng := rand.New(rand.NewPCG(uint64(round), 0x5a11))
		args := []string{}
		if round%2 == 0 { // background syncs during the workload too
			args = append(args, "--sync-every", "100ms")
		}
		e.mountDaemon(args...)
		pid := e.mountPid()
		if round == 1 {
			// The shared file: the regions straddle its 64 KiB chunks.
			const region = 50<<10 + 123
			shared := m.newSmallFile(t, rng, filepath.Join(mnt, "shared"), writers*region)
			for i := 0; i < writers; i++ {
				dir := filepath.Join(mnt, fmt.Sprintf("w%d", i))
				if err := os.Mkdir(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				ws = append(ws, &smallWriter{id: i, m: m, shared: shared, lo: i * region, hi: (i + 1) * region,
					stats: map[string]int{}})
			}
			if err := syncDir(mnt); err != nil {
				t.Fatal(err)
			}
		}
		// Each round gives every writer a new file; the earlier ones stay
		// and are written again.
		for _, w := range ws {
			w.rng = rand.New(rand.NewPCG(uint64(round), uint64(w.id)))
			w.fds = map[*smallFile]*smallFD{}
			size := []int{0, 1 + rng.IntN(4<<10), rng.IntN(200 << 10)}[rng.IntN(3)]
			w.own = append(w.own, m.newSmallFile(t, rng, filepath.Join(mnt, fmt.Sprintf("w%d", w.id), fmt.Sprintf("r%d", round)), size))
		}
		ops := make([]int, len(ws))
		for i, w := range ws {
			ops[i] = w.ops
		}
		var wg sync.WaitGroup
		var killed atomic.Bool
		errs := make([]error, len(ws))
		detached := make([]bool, len(ws))
		for i, w := range ws {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					if err := w.step(); err != nil {
						errs[i], detached[i] = err, killed.Load()
						return
					}
				}
			}()
		}
		time.Sleep(time.Duration(300+rng.IntN(1500)) * time.Millisecond)
		killed.Store(true)
		killMount(t, pid, mnt)
		wg.Wait()
		for _, w := range ws {
			w.closeAll()
		}
		for i, err := range errs {
			// The writers must have stopped because the mount died, not
			// because the file system refused an operation. A writer
			// between operations when the dead mount was detached finds
			// the empty directory under it instead.
			if !errors.Is(err, syscall.ENOTCONN) && !errors.Is(err, syscall.ECONNABORTED) &&
				!(detached[i] && errors.Is(err, syscall.ENOENT)) {
				t.Errorf("round %d: writer %d stopped with %v, want ENOTCONN from the killed mount", round, i, err)
			}
		}
		again := ""
		if round%3 == 0 {
			// Kill the next mount too, soon after it starts, while it may
			// still be recovering from the first kill: recovery must not
			// change what the files hold either.
			e.mountDaemon()
			d := time.Duration(rng.IntN(300)) * time.Millisecond
			time.Sleep(d)
			killMount(t, e.mountPid(), mnt)
			again = fmt.Sprintf(", and the next mount %v after it started", d)
		}
		fsckClean(t, e, round)
		e.mountDaemon()
		inFlight := 0
		for _, f := range m.files {
			got, err := os.ReadFile(f.path)
			if err != nil && !os.IsNotExist(err) {
				t.Fatalf("round %d: read %s: %v", round, f.path, err)
			}
			if cerr := f.check(got, err == nil); cerr != nil {
				t.Errorf("round %d: %s: %v", round, strings.TrimPrefix(f.path, mnt), cerr)
			}
			inFlight += len(f.pending)
			// What the kill left is what later rounds build on.
			f.durable, f.pending = got, map[int]*smallOp{}
		}
		if t.Failed() {
			t.FailNow()
		}
		readAll(t, mnt)
		e.ok("umount", mnt)
		n := 0
		for i, w := range ws {
			n += w.ops - ops[i]
		}
		t.Logf("round %d: killed after %d operations (%d in flight)%s; %d files checked, fsck clean", round, n, inFlight, again, len(m.files))
	}
	total := map[string]int{}
	for _, w := range ws {
		for k, v := range w.stats {
			total[k] += v
		}
	}
	t.Logf("%d rounds in %v: %v", rounds, time.Since(start).Round(time.Millisecond), total)
}

// TestSmallModelCheck checks the model the crash test judges files by:
// it accepts exactly the durable content with each byte an operation in
// flight covers old or new, and nothing else.
func TestSmallModelCheck(t *testing.T) {
	durable := []byte("0123456789")
	write := func(off int, s string) *smallOp {
		return &smallOp{trunc: -1, extents: []smallExtent{{off: off, data: []byte(s)}}, desc: "write"}
	}
	tests := []struct {
		name    string
		pending []*smallOp
		got     string
		ok      bool
	}{
		{"durable", nil, "0123456789", true},
		{"a durable byte lost", nil, "0123x56789", false},
		{"shorter", nil, "012345678", false},
		{"longer", nil, "0123456789\x00", false},
		{"overwrite applied", []*smallOp{write(2, "abc")}, "01abc56789", true},
		{"overwrite not applied", []*smallOp{write(2, "abc")}, "0123456789", true},
		{"overwrite partly applied", []*smallOp{write(2, "abc")}, "01a3c56789", true},
		{"overwrite leaves other bytes", []*smallOp{write(2, "abc")}, "01a\x00c56789", false},
		{"overwrite leaves a byte outside its range", []*smallOp{write(2, "abc")}, "01abcd6789", false},
		{"append applied", []*smallOp{write(10, "ab")}, "0123456789ab", true},
		{"append partly applied", []*smallOp{write(10, "ab")}, "0123456789a", true},
		{"append not applied", []*smallOp{write(10, "ab")}, "0123456789", true},
		{"append leaves zeros", []*smallOp{write(10, "ab")}, "0123456789\x00b", false},
		{"append runs long", []*smallOp{write(10, "ab")}, "0123456789abc", false},
		{"write past the end", []*smallOp{write(12, "ab")}, "0123456789\x00\x00ab", true},
		{"write past the end, only the gap", []*smallOp{write(12, "ab")}, "0123456789\x00", true},
		{"write past the end, garbage in the gap", []*smallOp{write(12, "ab")}, "0123456789\x01\x00ab", false},
		{"truncate applied", []*smallOp{{trunc: 4, desc: "truncate"}}, "0123", true},
		{"truncate not applied", []*smallOp{{trunc: 4, desc: "truncate"}}, "0123456789", true},
		{"truncate half applied", []*smallOp{{trunc: 4, desc: "truncate"}}, "012345", false},
		{"truncate zeroes the tail", []*smallOp{{trunc: 4, desc: "truncate"}}, "0123\x00\x00\x00\x00\x00\x00", false},
		{"two writes past the end, the later one only", []*smallOp{{trunc: -1, extents: []smallExtent{{10, []byte("ab")}, {12, []byte("cd")}}}},
			"0123456789\x00\x00cd", true},
		{"two writes, zeros where the later one goes", []*smallOp{{trunc: -1, extents: []smallExtent{{10, []byte("ab")}, {12, []byte("cd")}}}},
			"0123456789ab\x00", false},
		{"two writers", []*smallOp{write(0, "ab"), write(8, "yz")}, "a1234567y9", true},
		{"two writers, one byte wrong", []*smallOp{write(0, "ab"), write(8, "yz")}, "a12345679z", false},
	}
	for _, tc := range tests {
		f := &smallFile{durable: durable, pending: map[int]*smallOp{}}
		for i, op := range tc.pending {
			f.pending[i] = op
		}
		if err := f.check([]byte(tc.got), true); (err == nil) != tc.ok {
			t.Errorf("%s: check(%q) = %v, want ok %v", tc.name, tc.got, err, tc.ok)
		}
	}
	f := &smallFile{durable: durable, pending: map[int]*smallOp{}}
	if f.check(nil, false) == nil {
		t.Error("a missing file passed")
	}
	if got := applySmallOp(durable, &smallOp{trunc: -1, extents: []smallExtent{{8, []byte("ab")}, {12, []byte("c")}}}); string(got) != "01234567ab\x00\x00c" {
		t.Errorf("applySmallOp = %q", got)
	}
}
