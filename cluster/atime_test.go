package cluster

import (
	"syscall"
	"testing"
	"time"
)

// The relatime rule: renew an access time not newer than the last
// modification or change, or a day old; strictatime always, noatime never.
func TestNeedsAtime(t *testing.T) {
	now := time.Now().UnixNano()
	h := int64(time.Hour)
	tests := []struct {
		name                string
		atime, mtime, ctime int64
		mode                AtimeMode
		want                bool
	}{
		{"read after a write", now - h, now - h, now - h, AtimeRelative, true},
		{"modified since the last read", now - 2*h, now - h, now - h, AtimeRelative, true},
		{"changed (chmod) since", now - 2*h, now - 3*h, now - h, AtimeRelative, true},
		{"read again, unchanged", now - h, now - 2*h, now - 2*h, AtimeRelative, false},
		{"a day old", now - 25*h, now - 48*h, now - 48*h, AtimeRelative, true},
		{"strict", now - h, now - 2*h, now - 2*h, AtimeStrict, true},
		{"never", now - 25*h, now, now, AtimeNever, false},
	}
	for _, tc := range tests {
		n := Inode{Atime: tc.atime, Mtime: tc.mtime, Ctime: tc.ctime}
		if got := needsAtime(&n, tc.mode, now); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TouchAtime writes only when the rule says so.
func TestTouchAtime(t *testing.T) {
	tp := newTestPool(t, 1, 1)
	n, err := tp.Mknod(RootIno, "f", syscall.S_IFREG|0o644, Caller{}, "")
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := tp.TouchAtime(n.Ino, AtimeRelative); err != nil || !changed {
		t.Fatalf("first access: changed %v, %v", changed, err)
	}
	a, _ := tp.GetAttr(n.Ino)
	if a.Atime <= n.Atime {
		t.Fatalf("first access left atime at %d", a.Atime)
	}
	if changed, err := tp.TouchAtime(n.Ino, AtimeRelative); err != nil || changed {
		t.Fatalf("second access: changed %v, %v", changed, err)
	}
	if b, _ := tp.GetAttr(n.Ino); b.Atime != a.Atime {
		t.Fatalf("second access moved atime from %d to %d", a.Atime, b.Atime)
	}
	if _, err := tp.TouchAtime(n.Ino, AtimeStrict); err != nil {
		t.Fatal(err)
	}
	if c, _ := tp.GetAttr(n.Ino); c.Atime <= a.Atime {
		t.Fatalf("strictatime left atime at %d", c.Atime)
	}
}
