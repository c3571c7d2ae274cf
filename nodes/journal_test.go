package nodes

import (
	"encoding/binary"
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
	// A crash tears the last record of generation 2.
	j.Close()
	p := filepath.Join(dir, JournalDir, fmt.Sprintf("%016x%s", 2, journalSuffix))
	b, _ := os.ReadFile(p)
	if err := os.WriteFile(p, append(b, b[:recordHeader+0]...), 0o600); err != nil {
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
