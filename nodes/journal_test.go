package nodes

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func replayAll(t *testing.T, j *Journal) []string {
	t.Helper()
	var out []string
	if err := j.Replay(func(gen uint64, rec []byte) error {
		out = append(out, fmt.Sprintf("%d:%s", gen, rec))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// Records come back in order across generations and restarts; Drop
// forgets whole generations; a torn tail ends its file's records but not
// the later files'.
func TestJournal(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"a", "b"} {
		if err := j.Append([]byte(r)); err != nil {
			t.Fatal(err)
		}
	}
	old, err := j.Rotate()
	if err != nil || old != 1 {
		t.Fatalf("rotate: %d, %v", old, err)
	}
	if err := j.Append([]byte("c")); err != nil {
		t.Fatal(err)
	}
	if got := replayAll(t, j); !slices.Equal(got, []string{"1:a", "1:b", "2:c"}) {
		t.Fatalf("replay: %v", got)
	}
	// A crash tears the last record of generation 2: its header made
	// it to the disk, its payload did not (the file's zeros are there).
	j.Close()
	p := filepath.Join(dir, JournalDir, fmt.Sprintf("%016x%s", 2, journalSuffix))
	b, _ := os.ReadFile(p)
	torn := append([]byte(nil), b[:recordHeader]...)
	copy(b[recordHeader+1:], torn)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	j, err = OpenJournal(dir) // starts generation 3
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if err := j.Append([]byte("d")); err != nil {
		t.Fatal(err)
	}
	if got := replayAll(t, j); !slices.Equal(got, []string{"1:a", "1:b", "2:c", "3:d"}) {
		t.Fatalf("replay after a torn tail and a restart: %v", got)
	}
	// Damage in the middle of a record ends that file's records.
	b, _ = os.ReadFile(p)
	b[recordHeader] ^= 1
	os.WriteFile(p, b, 0o600)
	if got := replayAll(t, j); !slices.Equal(got, []string{"1:a", "1:b", "3:d"}) {
		t.Fatalf("replay after damage: %v", got)
	}
	if err := j.Drop(2); err != nil {
		t.Fatal(err)
	}
	if got := replayAll(t, j); !slices.Equal(got, []string{"3:d"}) {
		t.Fatalf("replay after drop: %v", got)
	}
}

// A dropped generation's file is reused by the next one; the older
// records it still holds past the new tail are never replayed, and
// records of the older format (without the generation in their CRC) are.
func TestJournalRecyclesFiles(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	for _, r := range []string{"first-record", "second-record", "third-record"} {
		if err := j.Append([]byte(r)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := j.Rotate(); err != nil {
		t.Fatal(err)
	}
	if err := j.Drop(1); err != nil {
		t.Fatal(err)
	}
	if g, ok := j.spare(); !ok || g != 1 {
		t.Fatalf("spare: generation %d, %v; want 1", g, ok)
	}
	if _, err := j.Rotate(); err != nil { // generation 3 takes the spare
		t.Fatal(err)
	}
	if err := j.Append([]byte("x")); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(j.path(3))
	if err != nil || st.Size() <= int64(recordHeader+1) {
		t.Fatalf("generation 3 is not the recycled file: %v, %v", st, err)
	}
	if got := replayAll(t, j); !slices.Equal(got, []string{"3:x"}) {
		t.Fatalf("replay of a recycled file: %v", got)
	}
	// A generation written by an older version, in the first format.
	rec := []byte("old")
	b := binary.LittleEndian.AppendUint32(nil, recordMagic1)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(rec)))
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(rec, castagnoli))
	if err := os.WriteFile(j.path(2), append(b, rec...), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := replayAll(t, j); !slices.Equal(got, []string{"2:old", "3:x"}) {
		t.Fatalf("replay with a first-format generation: %v", got)
	}
	// With every generation dropped, the numbers still go on from the
	// spare's, never reusing one whose records it may still hold.
	if _, err := j.Rotate(); err != nil {
		t.Fatal(err)
	}
	if err := j.Drop(4); err != nil {
		t.Fatal(err)
	}
	if gens, _ := j.generations(); len(gens) != 0 {
		t.Fatalf("generations left: %v", gens)
	}
	j.Close()
	j, err = OpenJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if j.gen != 5 {
		t.Fatalf("reopened at generation %d, want 5", j.gen)
	}
}

// Records appended through AppendAll replay like Append's, whether the
// journals share a flush or not, across the points where a file grows;
// a journal that fails does not fail the others of its batch; and a
// record past a grown file's end needs a flush of its own.
func TestAppendAll(t *testing.T) {
	for _, shared := range []bool{false, true} {
		t.Run(fmt.Sprintf("shared=%v", shared), func(t *testing.T) {
			var js []*Journal
			for range 3 {
				j, err := OpenJournal(t.TempDir())
				if err != nil {
					t.Fatal(err)
				}
				defer j.Close()
				// One device for all, or none: whatever the test machine's
				// filesystem is.
				j.dev = 0
				if shared {
					j.dev = 1
				}
				js = append(js, j)
			}
			want := make([][]string, len(js))
			// Records of growing sizes cross journalGrow several times,
			// at different rounds on each journal.
			for round := 0; round < 40; round++ {
				recs := make([][]byte, len(js))
				for i := range js {
					recs[i] = []byte(fmt.Sprintf("%d-%d-%s", i, round, make([]byte, (round*(i+1)*7919)%(journalGrow/3))))
					want[i] = append(want[i], fmt.Sprintf("1:%s", recs[i]))
				}
				for i, err := range AppendAll(js, recs) {
					if err != nil {
						t.Fatalf("round %d, journal %d: %v", round, i, err)
					}
				}
			}
			for i, j := range js {
				if got := replayAll(t, j); !slices.Equal(got, want[i]) {
					t.Fatalf("journal %d: %d records replayed, want %d", i, len(got), len(want[i]))
				}
				st, err := os.Stat(j.path(1))
				if err != nil || st.Size()%journalGrow != 0 || st.Size() < j.off {
					t.Fatalf("journal %d: file of %v bytes for %d of records (%v)", i, st.Size(), j.off, err)
				}
				if j.durable != j.size {
					t.Fatalf("journal %d: %d of %d bytes durable", i, j.durable, j.size)
				}
			}
			// A closed journal fails alone.
			js[1].Close()
			errs := AppendAll(js, [][]byte{[]byte("a"), []byte("b"), []byte("c")})
			if errs[0] != nil || !errors.Is(errs[1], ErrClosed) || errs[2] != nil {
				t.Fatalf("errors with one journal closed: %v", errs)
			}
			if got := replayAll(t, js[2]); got[len(got)-1] != "1:c" {
				t.Fatalf("last record of journal 2: %q", got[len(got)-1])
			}
		})
	}
}

// A journal grows its file ahead in zeros, so that the records after
// the one that grew it overwrite blocks the file has: they need no
// metadata, which is what lets journals on one device share a flush.
func TestJournalGrowsAhead(t *testing.T) {
	j, err := OpenJournal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	j.mu.Lock()
	b, _ := frame([]byte("first"))
	if err := j.write(b); err != nil {
		t.Fatal(err)
	}
	if j.size != journalGrow || j.durable != 0 {
		t.Fatalf("after the first record: size %d, durable %d", j.size, j.durable)
	}
	if err := j.flush(); err != nil {
		t.Fatal(err)
	}
	j.off += int64(len(b))
	b, _ = frame([]byte("second"))
	if err := j.write(b); err != nil {
		t.Fatal(err)
	}
	if j.size != j.durable {
		t.Fatalf("a record inside the grown file changed its size: %d, durable %d", j.size, j.durable)
	}
	j.off += int64(len(b))
	j.mu.Unlock()
	if got := replayAll(t, j); !slices.Equal(got, []string{"1:first", "1:second"}) {
		t.Fatalf("replay: %v", got)
	}
}
