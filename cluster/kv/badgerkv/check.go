package badgerkv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/fb"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/pb"
	"github.com/dgraph-io/badger/v4/table"
	"github.com/dgraph-io/badger/v4/y"
	"google.golang.org/protobuf/proto"

	"github.com/dhdfs/dhdfs/cluster/kv"
)

// Badger trusts the lengths and offsets in its files. A damaged table
// makes it slice out of range (a panic) or fail an assertion (log.Fatal,
// which exits the process), and it opens tables on goroutines of its own,
// where no recover() of ours can reach. Its own checksum verification
// does not help: a block's entry count is used before the block's
// checksum is checked, an unknown checksum algorithm panics, and
// Table.VerifyChecksum dereferences a nil block when a check fails. So
// before Badger sees the meta store, Check verifies every table
// the MANIFEST names, index and blocks, with bounds checks, on the
// caller's goroutine; a store that passes opens without Badger reading
// unchecked bytes (the WAL and value log entries carry CRCs that Badger
// checks itself).

// damaged returns the error for damage found in the store in dir.
func damaged(dir string, format string, a ...any) error {
	// One line: some of Badger's messages go on with advice on more.
	return &kv.DamagedError{Where: dir, Detail: firstLine(fmt.Sprintf(format, a...))}
}

// Check verifies the Badger files in dir that Badger would open without
// checking them: the MANIFEST and every table it names. A missing dir or
// an empty one is a new store and passes. Damage is a *kv.DamagedError.
func Check(dir string) (err error) {
	defer func() {
		// Our checks bound every offset; this is for what they missed
		// (the flatbuffer index is only read once its checksum passed).
		if r := recover(); r != nil {
			err = damaged(dir, "unreadable: %v", r)
		}
	}()
	f, err := os.Open(filepath.Join(dir, badger.ManifestFilename))
	if errors.Is(err, os.ErrNotExist) {
		// Badger would start an empty store and delete the tables as
		// unreferenced: metadata files without a MANIFEST are damage.
		for _, pat := range []string{"*.sst", "*.vlog", "*.mem"} {
			if m, _ := filepath.Glob(filepath.Join(dir, pat)); len(m) > 0 {
				return damaged(dir, "MANIFEST is missing")
			}
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("open metadata store %s: %w", dir, err)
	}
	defer f.Close()
	mf, _, err := badger.ReplayManifestFile(f, 0, badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		return damaged(dir, "MANIFEST: %v", err)
	}
	// In order, so that the same damage is reported the same way each time.
	for _, id := range slices.Sorted(maps.Keys(mf.Tables)) {
		tm, name := mf.Tables[id], "table "+table.IDToFilename(id)
		if tm.KeyID != 0 {
			return damaged(dir, "%s: encrypted, and this store never is", name)
		}
		data, err := os.ReadFile(filepath.Join(dir, table.IDToFilename(id)))
		if errors.Is(err, os.ErrNotExist) {
			return damaged(dir, "%s is missing", name)
		}
		if err != nil {
			return fmt.Errorf("read metadata store: %w", err)
		}
		if err := checkTable(data, tm.Compression == options.None); err != nil {
			return damaged(dir, "%s: %v", name, err)
		}
	}
	return checkHeaders(dir)
}

// checkHeaders checks the headers Badger reads without a checksum: a value
// log or write-ahead log file starts with the id of its encryption key,
// and the key registry with a fixed text. A damaged one makes Badger
// refuse the store with a message about encryption, which this store
// never uses.
func checkHeaders(dir string) error {
	logs, _ := filepath.Glob(filepath.Join(dir, "*.vlog"))
	mems, _ := filepath.Glob(filepath.Join(dir, "*.mem"))
	for _, path := range append(logs, mems...) {
		head, err := readHead(path, 8)
		if err != nil {
			return fmt.Errorf("read metadata store: %w", err)
		}
		// A shorter file is a torn one, which Badger's replay truncates.
		if len(head) == 8 && binary.BigEndian.Uint64(head) != 0 {
			return damaged(dir, "%s: header damaged", filepath.Base(path))
		}
	}
	const ivLen = 16 // then the text, unencrypted in an unencrypted store
	head, err := readHead(filepath.Join(dir, badger.KeyRegistryFileName), ivLen+len(keyRegistryText))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read metadata store: %w", err)
	}
	if len(head) > 0 && (len(head) < ivLen+len(keyRegistryText) || string(head[ivLen:]) != keyRegistryText) {
		return damaged(dir, "%s: header damaged", badger.KeyRegistryFileName)
	}
	return nil
}

// keyRegistryText is Badger's sanityText.
const keyRegistryText = "Hello Badger"

// readHead returns up to n bytes from the start of the file at path.
func readHead(path string, n int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n)
	m, err := io.ReadFull(f, b)
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		err = nil
	}
	return b[:m], err
}

var errTableShort = errors.New("a length points outside the table")

// checkTable verifies a Badger table file: its index against the
// footer's checksum and, if blocks is set, every block against its own
// (a compressed block's checksum is of its uncompressed bytes; this store
// is never compressed). The layout, from table.Builder: blocks, index,
// index length, checksum, checksum length; each block ends with its
// checksum and the checksum's length, lengths big-endian uint32.
func checkTable(data []byte, blocks bool) error {
	sum, end, err := checksumTrailer(data)
	if err != nil {
		return fmt.Errorf("footer: %w", err)
	}
	if end < 4 {
		return errTableShort
	}
	n := int(binary.BigEndian.Uint32(data[end-4 : end]))
	start := end - 4 - n
	if n == 0 || start < 0 {
		return errTableShort
	}
	index := data[start : end-4]
	if err := verifyChecksum(index, sum); err != nil {
		return fmt.Errorf("index: %w", err)
	}
	ti := fb.GetRootAsTableIndex(index, 0)
	if ti.OffsetsLength() == 0 {
		return errors.New("index lists no blocks")
	}
	if !blocks {
		return nil
	}
	var bo fb.BlockOffset
	for i := range ti.OffsetsLength() {
		if !ti.Offsets(&bo, i) {
			return fmt.Errorf("index entry %d unreadable", i)
		}
		off, n := int(bo.Offset()), int(bo.Len())
		if off+n > start || n < 0 {
			return fmt.Errorf("block %d: %w", i, errTableShort)
		}
		block := data[off : off+n]
		sum, end, err := checksumTrailer(block)
		if err == nil {
			err = verifyChecksum(block[:end], sum)
		}
		if err != nil {
			return fmt.Errorf("block %d: %w", i, err)
		}
	}
	return nil
}

// checksumTrailer reads the checksum that ends b and returns it with the
// length of what precedes it.
func checksumTrailer(b []byte) (*pb.Checksum, int, error) {
	if len(b) < 4 {
		return nil, 0, errTableShort
	}
	n := int(binary.BigEndian.Uint32(b[len(b)-4:]))
	end := len(b) - 4 - n
	if end < 0 {
		return nil, 0, errTableShort
	}
	var sum pb.Checksum
	if err := proto.Unmarshal(b[end:len(b)-4], &sum); err != nil {
		return nil, 0, fmt.Errorf("checksum unreadable: %w", err)
	}
	return &sum, end, nil
}

// verifyChecksum is y.VerifyChecksum without its panic on an unknown
// algorithm.
func verifyChecksum(data []byte, sum *pb.Checksum) error {
	if sum.Algo != pb.Checksum_CRC32C && sum.Algo != pb.Checksum_XXHash64 {
		return fmt.Errorf("unknown checksum algorithm %d", sum.Algo)
	}
	if y.CalculateChecksum(data, sum.Algo) != sum.Sum {
		return errors.New("checksum mismatch")
	}
	return nil
}

// recoverBadger turns a panic raised inside Badger into a damaged-store
// error in *err; a panic raised anywhere else (our own code, in a
// transaction's function) goes on, as a bug must. Call it deferred.
func recoverBadger(dir string, err *error) {
	r := recover()
	if r == nil {
		return
	}
	if !panickedInBadger() {
		panic(r)
	}
	*err = damaged(dir, "Badger failed reading it: %v", r)
}

// panickedInBadger reports whether the panic being recovered was raised
// in Badger: of the frames below runtime.gopanic, the innermost that is
// Badger's or ours decides (frames of the runtime, the standard library
// and Badger's own dependencies in between do not).
func panickedInBadger() bool {
	pcs := make([]uintptr, 128)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(1, pcs)])
	inPanic := false
	for {
		f, more := frames.Next()
		switch {
		case f.Function == "runtime.gopanic":
			inPanic = true
		case inPanic && strings.HasPrefix(f.Function, "github.com/dgraph-io/"):
			return true
		case inPanic && strings.HasPrefix(f.Function, "github.com/dhdfs/"):
			return false
		}
		if !more {
			return false
		}
	}
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}
