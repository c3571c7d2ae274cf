package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
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
	entry := append(binary.LittleEndian.AppendUint64(nil, 3), 1, 2, 3)
	good := encodeSegment(entry)
	flipped := bytes.Clone(good)
	flipped[len(flipped)-1] ^= 1
	tests := []struct {
		name string
		b    []byte
		ok   bool
	}{
		{"valid", good, true},
		{"empty stream", encodeSegment(nil), true},
		{"no magic", entry, false},
		{"flipped bit", flipped, false},
		{"truncated", good[:len(good)-1], false},
		{"length past the end", encodeSegment(binary.LittleEndian.AppendUint64(nil, 1<<62)), false},
		{"partial length", encodeSegment([]byte{1, 2, 3}), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeSegment(tc.b)
			if (err == nil) != tc.ok {
				t.Fatalf("err %v, want ok %v", err, tc.ok)
			}
			if tc.ok && !bytes.Equal(got, tc.b[len(segmentMagic)+4:]) {
				t.Fatal("wrong stream")
			}
		})
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
