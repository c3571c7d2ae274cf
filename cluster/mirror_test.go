package cluster

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/dhdfs/dhdfs/cluster/kv"
	"github.com/dhdfs/dhdfs/nodes"
)

func TestChainFrom(t *testing.T) {
	full := func(seq uint64) segment { return segment{seq: seq, full: true} }
	inc := func(seq uint64) segment { return segment{seq: seq} }
	tests := []struct {
		name string
		segs []segment
		want []uint64 // nil: error
	}{
		{"empty", nil, nil},
		{"increments only", []segment{inc(1), inc(2)}, nil},
		{"full alone", []segment{full(3)}, []uint64{3}},
		{"full and increments", []segment{full(3), inc(4), inc(5)}, []uint64{3, 4, 5}},
		{"latest full wins", []segment{full(1), inc(2), full(3), inc(4)}, []uint64{3, 4}},
		{"stops at a gap", []segment{full(1), inc(2), inc(4)}, []uint64{1, 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			chain, err := chainFrom(tc.segs)
			if tc.want == nil {
				if err == nil {
					t.Fatalf("want an error, got %v", chain)
				}
				return
			}
			var got []uint64
			for _, s := range chain {
				got = append(got, s.seq)
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("chain %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// Losing home loses nothing after a clean close, and only what followed
// the last mirror otherwise; any one drive rebuilds it.
func TestRebuildHome(t *testing.T) {
	onDisk(t) // copies a drive's mirror directory
	tp := newTestPool(t, 3, 2)
	ctx := context.Background()
	a, b, c := randBytes(1, 3*MinChunkSize), randBytes(2, 100), randBytes(3, MinChunkSize+1)
	tp.put("/a", a)
	if _, err := tp.MkdirPath("/d", false, 0o755, Caller{}); err != nil {
		t.Fatal(err)
	}
	tp.put("/d/b", b)
	if n, err := tp.MirrorMeta(); err != nil || n != 3 {
		t.Fatalf("mirror: %d drives, %v", n, err)
	}
	if err := tp.Unlink(RootIno, "a"); err != nil { // an increment with a delete
		t.Fatal(err)
	}
	tp.put("/c", c)
	if _, err := tp.MirrorMeta(); err != nil {
		t.Fatal(err)
	}
	// The state of drive 2's mirror now, as a crash would leave it.
	snap := filepath.Join(t.TempDir(), "snap")
	if err := os.CopyFS(snap, os.DirFS(filepath.Join(tp.paths[1], mirrorDirName))); err != nil {
		t.Fatal(err)
	}
	tp.put("/late", randBytes(4, 10)) // after the last mirror
	if err := tp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(tp.home); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name     string
		crashed  bool
		wantLate bool
	}{
		{"after a clean close", false, true},
		{"from the mirror before the last changes", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			drive := tp.paths[1]
			if tc.crashed {
				if err := os.RemoveAll(filepath.Join(drive, mirrorDirName)); err != nil {
					t.Fatal(err)
				}
				if err := os.CopyFS(filepath.Join(drive, mirrorDirName), os.DirFS(snap)); err != nil {
					t.Fatal(err)
				}
			}
			home := filepath.Join(t.TempDir(), "home")
			rep, err := RebuildHome(ctx, drive, home, Options{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Drive != "d2" || rep.Fsck.Unrepaired() != 0 {
				t.Fatalf("rebuild: %+v", rep)
			}
			m, err := Open(home, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			rp := &testPool{Manager: m, t: t}
			rp.mustEqual("/d/b", b)
			rp.mustEqual("/c", c)
			if _, err := m.Resolve("/a"); err == nil {
				t.Fatal("/a, deleted before the mirror, is back")
			}
			if _, err := m.Resolve("/late"); (err == nil) != tc.wantLate {
				t.Fatalf("/late present: %v, want %v", err == nil, tc.wantLate)
			}
			if rep, err := m.Fsck(ctx, false, nil); err != nil || len(rep.Problems) != 0 {
				t.Fatalf("fsck after rebuild: %v %s", err, problemKinds(rep))
			}
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}
			// The drives now belong to the rebuilt home; the next case
			// rebuilds again from the same drives.
		})
	}
}

func TestDecodeSegment(t *testing.T) {
	batches := []metaBatch{
		{Seq: 3, Muts: []mutation{{Key: []byte("k"), Val: []byte("v")}, {Key: []byte("gone"), Del: true}}},
		{Seq: 4, Muts: []mutation{{Key: []byte("k")}}}, // an empty value
	}
	var body []byte
	for _, b := range batches {
		body = appendBatch(body, b)
	}
	good := encodeSegment(body)
	flipped := bytes.Clone(good)
	flipped[len(flipped)-1] ^= 1
	legacy, err := os.ReadFile("testdata/mirror-v1/meta-mirror/0000000000000001.full")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		b    []byte
		want []metaBatch // nil: an error
	}{
		{"valid", good, batches},
		{"empty stream", encodeSegment(nil), []metaBatch{}},
		{"no magic", body, nil},
		{"flipped bit", flipped, nil},
		{"truncated", good[:len(good)-1], nil},
		{"length past the end", encodeSegment(append(appendBatch(nil, metaBatch{Seq: 1})[:1], 1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f)), nil},
		{"partial length", encodeSegment([]byte{0x80}), nil},
		{"first format", legacy, []metaBatch{}},
		{"first format, flipped bit", append(bytes.Clone(legacy[:len(legacy)-1]), legacy[len(legacy)-1]^1), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := []metaBatch{}
			err := decodeSegment(tc.b, func(b metaBatch) error {
				got = append(got, b)
				return nil
			})
			if (err == nil) != (tc.want != nil) {
				t.Fatalf("err %v, want ok %v", err, tc.want != nil)
			}
			switch {
			case tc.want == nil:
				if len(got) != 0 {
					t.Fatalf("a damaged segment yielded %d transactions", len(got))
				}
			case tc.name == "first format":
				if len(got) != 1 || len(got[0].Muts) < 10 {
					t.Fatalf("first format: %+v", got)
				}
			case !reflect.DeepEqual(got, tc.want):
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// A drive mirrored in the first format (Badger backups) still rebuilds
// home; the rebuilt pool then mirrors in the current format.
func TestRebuildFromFirstFormat(t *testing.T) {
	drive := t.TempDir()
	if err := os.CopyFS(drive, os.DirFS("testdata/mirror-v1")); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(t.TempDir(), "home")
	rep, err := RebuildHome(context.Background(), drive, home, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Segments != 3 || rep.Fsck.Unrepaired() != 0 {
		t.Fatalf("rebuild: %+v", rep)
	}
	m, err := Open(home, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, p := range []string{"/docs", "/docs/sub", "/docs/empty", "/gone", "/later", "/later/at-close"} {
		if _, err := m.Resolve(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	if _, err := m.Resolve("/removed"); err == nil {
		t.Error("/removed, deleted in an increment, is back")
	}
	if n, err := m.MirrorMeta(); err != nil || n != 1 {
		t.Fatalf("mirror: %d, %v", n, err)
	}
	at, err := nodes.OpenDrive(drive)
	if err != nil {
		t.Fatal(err)
	}
	segs, err := listSegments(at.Mirror())
	if err != nil || len(segs) != 1 || !segs[0].full || segs[0].seq != 4 {
		t.Fatalf("after the rebuilt pool's first mirror: %+v, %v", segs, err)
	}
	b, err := os.ReadFile(filepath.Join(drive, mirrorDirName, segs[0].name))
	if err != nil || !bytes.HasPrefix(b, segmentMagic) {
		t.Fatalf("the new chain is not in the current format: %v", err)
	}
}

// A home rebuilt by recover takes the drives over: the old home, if it
// still exists, leaves them alone instead of deleting the new home's
// chunks as orphans.
func TestRecoverFencesOldHome(t *testing.T) {
	tp := newTestPool(t, 3, 2)
	ctx := context.Background()
	old := randBytes(1, 3*MinChunkSize)
	tp.put("/old", old)
	if _, err := tp.MirrorMeta(); err != nil {
		t.Fatal(err)
	}
	if err := tp.Close(); err != nil {
		t.Fatal(err)
	}
	home2 := filepath.Join(t.TempDir(), "home2")
	if _, err := RebuildHome(ctx, tp.paths[0], home2, Options{}, nil); err != nil {
		t.Fatal(err)
	}
	m2, err := Open(home2, Options{})
	if err != nil {
		t.Fatal(err)
	}
	rp := &testPool{Manager: m2, t: t}
	fresh := randBytes(2, 3*MinChunkSize)
	rp.put("/new", fresh)
	if err := m2.Close(); err != nil {
		t.Fatal(err)
	}

	tp.open() // the old home
	for _, d := range tp.driveList() {
		if st, reason := d.state(); st != StateFailed || !errors.Is(reason, ErrBadDrive) {
			t.Fatalf("the old home uses drive %s (%s, %v) after another home took it over", d.record().Name, st, reason)
		}
	}
	if rep, err := tp.GC(ctx, nil); err == nil && rep.Orphans > 0 {
		t.Fatalf("the old home's gc deleted %d copies: %+v", rep.Orphans, rep)
	}
	tp.Close()

	m2, err = Open(home2, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	rp = &testPool{Manager: m2, t: t}
	rp.mustEqual("/new", fresh)
	rp.mustEqual("/old", old)
	if rep, err := m2.Fsck(ctx, false, nil); err != nil || len(rep.Problems) != 0 {
		t.Fatalf("fsck of the recovered home: %v %s", err, problemKinds(rep))
	}
}

// mirrorDirName is where a directory drive keeps its mirror area; the tests
// copy it to stage crashes.
const mirrorDirName = "meta-mirror"

// The chain goes on across a clean close and open, with increments of
// what changed; a pool opened and closed without changes writes nothing;
// after a crash, whose last transactions no increment holds, the next
// round writes full dumps.
func TestMirrorChainAcrossOpens(t *testing.T) {
	tp := newTestPool(t, 2, 2)
	at, err := nodes.OpenDrive(tp.paths[0])
	if err != nil {
		t.Fatal(err)
	}
	segments := func() string {
		t.Helper()
		segs, err := listSegments(at.Mirror())
		if err != nil {
			t.Fatal(err)
		}
		var s []string
		for _, seg := range segs {
			s = append(s, seg.name)
		}
		return strings.Join(s, " ")
	}
	mirror := func() {
		t.Helper()
		if n, err := tp.MirrorMeta(); err != nil || n != 2 {
			t.Fatalf("mirror: %d drives, %v", n, err)
		}
	}
	files := map[string][]byte{"/a": randBytes(1, 100), "/b": randBytes(2, 100), "/c": randBytes(3, 100), "/d": randBytes(4, 100)}
	tp.put("/a", files["/a"])
	mirror()
	tp.put("/b", files["/b"])
	tp.reopen()
	tp.put("/c", files["/c"])
	mirror()
	if got, want := segments(), "0000000000000001.full 0000000000000002.inc 0000000000000003.inc"; got != want {
		t.Fatalf("segments %s, want %s", got, want)
	}
	tp.reopen()
	if got, want := segments(), "0000000000000001.full 0000000000000002.inc 0000000000000003.inc"; got != want {
		t.Fatalf("after an open and close without changes: segments %s, want %s", got, want)
	}
	tp.put("/d", files["/d"])
	tp.crash()
	tp.open()
	mirror()
	if got, want := segments(), "0000000000000004.full"; got != want {
		t.Fatalf("after a crash: segments %s, want %s", got, want)
	}
	tp.Close()
	home := filepath.Join(t.TempDir(), "home")
	if _, err := RebuildHome(context.Background(), tp.paths[0], home, Options{}, nil); err != nil {
		t.Fatal(err)
	}
	m, err := Open(home, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	rp := &testPool{Manager: m, t: t}
	for p, data := range files {
		rp.mustEqual(p, data)
	}
}

// The transactions kept for journals and the mirror hold their own bytes:
// a caller may reuse its buffers once Set returns.
func TestLoggedMutationsAreCopies(t *testing.T) {
	meta, err := openEngineMeta("mem://", true)
	if err != nil {
		t.Fatal(err)
	}
	defer meta.close()
	var got []mutation
	meta.setLogged(func(_ uint64, muts []mutation) { got = muts })
	buf := []byte("key-1value-1")
	err = meta.update(func(txn kv.Txn) error {
		if err := txn.Set(buf[:5], buf[5:]); err != nil {
			return err
		}
		if err := txn.Delete(buf[:5]); err != nil {
			return err
		}
		copy(buf, "XXXXXXXXXXXX") // reused, as the contract allows
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || string(got[0].Key) != "key-1" || string(got[0].Val) != "value-1" || string(got[1].Key) != "key-1" || !got[1].Del {
		t.Fatalf("logged %+v", got)
	}
}
