package cluster

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/dhdfs/dhdfs/nodes"
)

// New pools name chunks by BLAKE3; a pool whose settings predate the
// choice (format 1, no hash) goes on naming them by SHA-256, and scrub
// verifies each pool's chunks by its own hash. A hash dhdfs does not know
// is refused.
func TestChunkHashPerPool(t *testing.T) {
	data := randBytes(5, 3*MinChunkSize)
	for _, tc := range []struct {
		name string
		old  bool
		sum  func([]byte) nodes.ChunkID
	}{
		{"blake3", false, nodes.BLAKE3.Sum},
		{"format 1", true, nodes.SumChunk},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := newTestPool(t, 3, 2)
			if tc.old {
				tp.Close()
				p := filepath.Join(tp.home, configFile)
				var raw map[string]any
				b, _ := os.ReadFile(p)
				if err := json.Unmarshal(b, &raw); err != nil {
					t.Fatal(err)
				}
				raw["format"] = 1
				delete(raw, "hash")
				b, _ = json.Marshal(raw)
				if err := os.WriteFile(p, b, 0o600); err != nil {
					t.Fatal(err)
				}
				tp.open()
			}
			n := tp.put("/f", data)
			locs, err := tp.ChunkLocations(n.Ino)
			if err != nil || len(locs) != 3 {
				t.Fatalf("locations: %v, %v", locs, err)
			}
			for i, l := range locs {
				if want := tc.sum(data[i*MinChunkSize : (i+1)*MinChunkSize]); l.ID != want.String() {
					t.Fatalf("chunk %d named %s, want %s", i, l.ID, want)
				}
			}
			if rep, err := tp.Scrub(t.Context(), nil); err != nil || rep.Corrupt != 0 || rep.Verified != 6 {
				t.Fatalf("scrub: %+v, %v", rep, err)
			}
		})
	}
	cfg := DefaultPoolConfig()
	cfg.Hash = "md5"
	if _, err := Init(filepath.Join(t.TempDir(), "home"), cfg); !errors.Is(err, ErrInvalid) {
		t.Fatalf("init with an unknown hash: %v", err)
	}
}
