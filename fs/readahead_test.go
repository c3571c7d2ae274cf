package fs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dhdfs/dhdfs/cluster"
)

func TestReadAheadSetting(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the kernel lets only root change a mount's read-ahead")
	}
	for _, tc := range []struct {
		name string
		set  int
		want int // 0: the kernel's default, at most 128 KiB
	}{
		{"default", DefaultReadAhead, 1 << 20},
		{"larger", 4 << 20, 4 << 20},
		{"odd bytes round down to KiB", 3<<20 + 100, 3 << 20},
		{"kernel default", 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tm := mountPoolWith(t, 2, cluster.MinChunkSize, func(c *Config) { c.ReadAhead = tc.set })
			got, err := ReadAhead(tm.mnt)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == 0 && (got <= 0 || got > 128<<10) || tc.want != 0 && got != tc.want {
				t.Fatalf("read-ahead = %d bytes, want %d", got, tc.want)
			}
		})
	}
}

func TestReadAheadRejected(t *testing.T) {
	for _, ra := range []int{-1, MaxReadAhead + 1} {
		dir := t.TempDir()
		_, err := Mount(dir, nil, Config{ReadAhead: ra})
		if err == nil || !strings.Contains(err.Error(), "read-ahead") {
			t.Errorf("ReadAhead %d: err = %v, want a read-ahead error", ra, err)
		}
	}
	if _, err := ReadAhead(filepath.Join(t.TempDir())); err == nil {
		t.Error("ReadAhead of a plain directory: no error")
	}
}
