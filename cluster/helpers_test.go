package cluster

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dhdfs/dhdfs/cluster/kv/memkv"
	"github.com/dhdfs/dhdfs/nodes"
	"github.com/dhdfs/dhdfs/nodes/dirdrive"
)

// testPool is a pool in a temp dir whose drives are wrapped in
// nodes.Faulty so tests can make them misbehave.
type testPool struct {
	*Manager
	t        testing.TB
	home     string
	paths    []string
	mu       sync.Mutex
	faulty   map[string]*nodes.Faulty // by drive name
	openOpts Options                  // for open; WrapStore is set by open
}

func newTestPool(t *testing.T, drives, replicas int) *testPool {
	t.Helper()
	return newTestPoolTB(t, drives, replicas, MinChunkSize)
}

func newTestPoolTB(t testing.TB, drives, replicas, chunkSize int) *testPool {
	t.Helper()
	return newTestPoolWith(t, drives, replicas, chunkSize, Options{})
}

func newTestPoolWith(t testing.TB, drives, replicas, chunkSize int, opts Options) *testPool {
	t.Helper()
	return newTestPoolConfig(t, drives, opts, func(cfg *PoolConfig) { cfg.Replicas, cfg.ChunkSize = replicas, chunkSize })
}

// newTestPoolWithConfig is newTestPool with the pool config changed by edit.
func newTestPoolWithConfig(t testing.TB, drives, replicas int, edit func(*PoolConfig)) *testPool {
	t.Helper()
	return newTestPoolConfig(t, drives, Options{}, func(cfg *PoolConfig) {
		cfg.Replicas, cfg.ChunkSize = replicas, MinChunkSize
		edit(cfg)
	})
}

// The pools of most tests live in memory: mem:// metadata and mem://
// drives, nothing on disk but home's config and lock. A test whose pool
// needs real drives and a Badger home (restarts that replay journals,
// crashes, space on a filesystem, drives' directories) calls onDisk first.
var (
	diskTests sync.Map // test names
	memPools  atomic.Int64
)

// onDisk makes the pools of t (and of its subtests) real: drives in
// directories and the metadata in a Badger store in home.
func onDisk(t testing.TB) { diskTests.Store(t.Name(), true) }

func isOnDisk(t testing.TB) bool {
	for name := t.Name(); ; name = name[:strings.LastIndexByte(name, '/')] {
		if _, ok := diskTests.Load(name); ok {
			return true
		}
		if !strings.Contains(name, "/") {
			return false
		}
	}
}

func newTestPoolConfig(t testing.TB, drives int, opts Options, edit func(*PoolConfig)) *testPool {
	t.Helper()
	root := t.TempDir()
	tp := &testPool{t: t, home: filepath.Join(root, "home"), faulty: map[string]*nodes.Faulty{}, openOpts: opts}
	cfg := DefaultPoolConfig()
	edit(&cfg)
	mem := ""
	if !isOnDisk(t) && cfg.Meta == "" {
		mem = fmt.Sprintf("pool-%d", memPools.Add(1))
		cfg.Meta = "mem://" + mem + "/meta"
		t.Cleanup(func() {
			memkv.Forget(mem + "/")
			nodes.ForgetMemDrives(mem + "/")
		})
	}
	if _, err := Init(tp.home, cfg); err != nil {
		t.Fatal(err)
	}
	tp.open()
	for i := 0; i < drives; i++ {
		p := filepath.Join(root, fmt.Sprintf("disk%d", i+1))
		if mem != "" {
			p = fmt.Sprintf("mem://%s/disk%d", mem, i+1)
		} else if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if _, _, err := tp.AddDrive(p, AddDriveOptions{}); err != nil {
			t.Fatal(err)
		}
		tp.paths = append(tp.paths, p)
	}
	return tp
}

func (tp *testPool) open() {
	tp.t.Helper()
	opts := tp.openOpts
	inner := opts.WrapStore
	opts.WrapStore = func(rec DriveRecord, s nodes.Store) nodes.Store {
		if inner != nil {
			s = inner(rec, s)
		}
		f := nodes.NewFaulty(s)
		tp.mu.Lock()
		tp.faulty[rec.Name] = f
		tp.mu.Unlock()
		return f
	}
	m, err := Open(tp.home, opts)
	if err != nil {
		tp.t.Fatal(err)
	}
	tp.Manager = m
	tp.t.Cleanup(func() { m.Close() })
}

func (tp *testPool) reopen() {
	tp.t.Helper()
	if err := tp.Close(); err != nil {
		tp.t.Fatal(err)
	}
	tp.open()
}

// syncs returns how many times the pool synced each drive, by name.
func (tp *testPool) syncs() map[string]int64 {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	n := map[string]int64{}
	for name, f := range tp.faulty {
		n[name] = f.Syncs()
	}
	return n
}

// readFirst makes reads try drive name before the others: they go to the
// drive with the lowest recent latency.
func (tp *testPool) readFirst(name string) {
	tp.t.Helper()
	for _, d := range tp.driveList() {
		d.readNanos.Store(int64(time.Second))
	}
	d, err := tp.driveByName(name)
	if err != nil {
		tp.t.Fatal(err)
	}
	d.readNanos.Store(1)
}

func (tp *testPool) fault(name string, f nodes.Faults) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	tp.faulty[name].Set(f)
}

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

func (tp *testPool) put(p string, data []byte) Inode {
	tp.t.Helper()
	n, err := tp.PutFile(context.Background(), p, bytes.NewReader(data), 0o644, Caller{})
	if err != nil {
		tp.t.Fatalf("put %s: %v", p, err)
	}
	return n
}

func (tp *testPool) get(p string) []byte {
	tp.t.Helper()
	var buf bytes.Buffer
	if _, err := tp.GetFile(context.Background(), p, &buf); err != nil {
		tp.t.Fatalf("get %s: %v", p, err)
	}
	return buf.Bytes()
}

func (tp *testPool) mustEqual(p string, want []byte) {
	tp.t.Helper()
	got := tp.get(p)
	if !bytes.Equal(got, want) {
		tp.t.Fatalf("%s: read %d bytes that differ from the %d written", p, len(got), len(want))
	}
}

// storedChunks counts the chunks physically present on each drive.
func (tp *testPool) storedChunks() map[string]int {
	tp.t.Helper()
	out := map[string]int{}
	for _, d := range tp.driveList() {
		s := d.usable()
		if s == nil {
			continue
		}
		n := 0
		if err := s.Iterate(func(nodes.ChunkID, int64) error { n++; return nil }); err != nil {
			tp.t.Fatal(err)
		}
		out[d.record().Name] = n
	}
	return out
}

func init() {
	// A test that deletes a drive's directory leaves Badger unable to flush.
	dirdrive.CloseTimeout = time.Second
}

// chunkAt returns the chunk of slot idx of ino, which must be one whole
// stored chunk (what files written in one go have); ok is false for a hole.
func (tp *testPool) chunkAt(ino Ino, idx int64) (ChunkRef, bool, error) {
	ls, err := tp.slotAt(ino, idx)
	if err != nil || len(ls) == 0 {
		return ChunkRef{}, false, err
	}
	ref, ok := ls.single()
	if !ok {
		return ChunkRef{}, false, fmt.Errorf("slot %d of inode %d is %v, not one chunk", idx, ino, ls)
	}
	return ref, true, nil
}

// flushDeletes runs sync rounds until released chunks are deleted from
// the drives and every slot is settled: deletes wait for the change that
// freed a chunk to be durable.
func (tp *testPool) flushDeletes() {
	tp.t.Helper()
	if err := tp.settleAll(); err != nil {
		tp.t.Fatal(err)
	}
}

// crash closes the pool as a killed process would leave it: background
// work stopped, what reached the stores' files kept (as the page cache
// keeps it), nothing marked clean and no final checkpoint.
func (tp *testPool) crash() {
	tp.Manager.closeOnce.Do(func() {
		close(tp.done)
		tp.wg.Wait()
		tp.forgetHeld() // memory a killed process loses
		tp.syncAll()
		tp.meta.sync()
		tp.closeStores()
		tp.meta.close()
		tp.lock.release()
	})
}

// forgetHeld drops the chunks the drives hold in memory (held.go).
func (tp *testPool) forgetHeld() {
	for _, d := range tp.driveList() {
		d.mu.Lock()
		h, ok := d.store.(*heldStore)
		d.mu.Unlock()
		if ok {
			h.mu.Lock()
			clear(h.held)
			h.bytes = 0
			h.mu.Unlock()
		}
	}
}

// createOpen makes the regular file name in the root and opens it.
func (tp *testPool) createOpen(name string) (Inode, *File) {
	tp.t.Helper()
	n, err := tp.Mknod(RootIno, name, syscall.S_IFREG|0o644, Caller{}, "")
	if err != nil {
		tp.t.Fatal(err)
	}
	f, err := tp.OpenFile(n.Ino)
	if err != nil {
		tp.t.Fatal(err)
	}
	return n, f
}
