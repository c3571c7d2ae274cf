package cluster

import (
	"bytes"
	"context"
	"errors"
	"syscall"
	"testing"
)

// Paths resolve as the kernel resolves them: ".." goes back from what was
// named, which must exist, and never above the root.
func TestPathsResolveLikeTheKernel(t *testing.T) {
	tp := newTestPool(t, 1, 1)
	c := Caller{Uid: 1000, Gid: 1000}
	if _, err := tp.MkdirPath("/a/b", true, 0o755, c); err != nil {
		t.Fatal(err)
	}
	put := func(p string) error {
		_, err := tp.PutFile(context.Background(), p, bytes.NewReader([]byte("x")), 0o644, c)
		return err
	}
	for p, want := range map[string]error{
		"/a/../a/b":       nil,
		"/a/./b/":         nil,
		"//a//b":          nil,
		"/nope/../a":      ErrNotFound,
		"/a/nope/../b":    ErrNotFound,
		"/..":             ErrInvalid,
		"/a/../../a":      ErrInvalid,
		"/a/b/../../../x": ErrInvalid,
	} {
		_, err := tp.Resolve(p)
		if want == nil && err != nil || want != nil && !errors.Is(err, want) {
			t.Errorf("Resolve(%q): %v, want %v", p, err, want)
		}
	}
	if err := put("/a/../f"); err != nil {
		t.Fatal(err)
	}
	if _, err := tp.Resolve("/f"); err != nil {
		t.Fatalf("put /a/../f: %v", err)
	}
	for p, want := range map[string]error{
		"/../../x":    ErrInvalid,
		"/nope/../g":  ErrNotFound,
		"/a/..":       ErrInvalid,
		"/f/../g":     ErrNotDir,
		"/a/b/../../": ErrInvalid,
	} {
		if err := put(p); !errors.Is(err, want) {
			t.Errorf("put %q: %v, want %v", p, err, want)
		}
	}
	if _, err := tp.Resolve("/x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("put /../../x made /x: %v", err)
	}
	if _, err := tp.MkdirPath("/m/../n", true, 0o755, c); err != nil {
		t.Fatalf("mkdir -p /m/../n: %v", err)
	}
	for _, p := range []string{"/m", "/n"} {
		if n, err := tp.Resolve(p); err != nil || !n.IsDir() {
			t.Fatalf("after mkdir -p /m/../n, %s: %v", p, err)
		}
	}
}

// mkdir with no mode makes 0755, not d---------; put keeps set-group-ID
// only for a member of the file's group.
func TestPathModes(t *testing.T) {
	tp := newTestPool(t, 1, 1)
	user := Caller{Uid: 1000, Gid: 1000}
	n, err := tp.MkdirPath("/d", false, 0, user)
	if err != nil {
		t.Fatal(err)
	}
	if n.Mode&0o7777 != 0o755 {
		t.Fatalf("mkdir without a mode: %o", n.Mode&0o7777)
	}
	// A setgid directory of another group: its files take that group.
	sg, err := tp.MkdirPath("/sg", false, syscall.S_ISGID|0o777, Caller{Uid: 0, Gid: 50})
	if err != nil {
		t.Fatal(err)
	}
	if sg.Mode&syscall.S_ISGID == 0 {
		t.Fatalf("setgid directory: %o", sg.Mode)
	}
	put := func(p string, mode uint32, c Caller) Inode {
		t.Helper()
		n, err := tp.PutFile(context.Background(), p, bytes.NewReader([]byte("x")), mode, c)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if m := put("/sg/f", syscall.S_ISUID|syscall.S_ISGID|0o755, user).Mode; m&syscall.S_ISGID != 0 || m&syscall.S_ISUID == 0 {
		t.Fatalf("user's put into another group's setgid directory: mode %o, want setuid kept, setgid dropped", m&0o7777)
	}
	if m := put("/d/own", syscall.S_ISGID|0o755, user).Mode; m&syscall.S_ISGID == 0 {
		t.Fatalf("user's put in their own group: mode %o, want setgid kept", m&0o7777)
	}
	if m := put("/sg/root", syscall.S_ISGID|0o755, Caller{}).Mode; m&syscall.S_ISGID == 0 {
		t.Fatalf("root's put: mode %o, want setgid kept", m&0o7777)
	}
}
