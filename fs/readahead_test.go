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

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string // "" for valid
	}{
		{"default", func(*Config) {}, ""},
		{"kernel read-ahead", func(c *Config) { c.ReadAhead = 0 }, ""},
		{"largest read-ahead", func(c *Config) { c.ReadAhead = MaxReadAhead }, ""},
		{"negative read-ahead", func(c *Config) { c.ReadAhead = -1 }, "read-ahead -1 bytes"},
		{"read-ahead too large", func(c *Config) { c.ReadAhead = MaxReadAhead + 1 }, "up to 64 MiB"},
		{"negative timeout", func(c *Config) { c.Timeout = -1 }, "cache timeout"},
	} {
		cfg := DefaultConfig()
		tc.edit(&cfg)
		err := cfg.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: Validate() = %v, want %q", tc.name, err, tc.want)
		}
		if tc.want != "" {
			// Mount refuses before touching the mount point or the pool.
			if _, err := Mount(t.TempDir(), nil, cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: Mount = %v, want %q", tc.name, err, tc.want)
			}
		}
	}
	if _, err := ReadAhead(filepath.Join(t.TempDir())); err == nil {
		t.Error("ReadAhead of a plain directory: no error")
	}
}
