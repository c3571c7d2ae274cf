package cluster

import (
	"errors"
	"fmt"
	"sync"
	"testing"
)

// TestXattrAbsentRemembered checks that remembering absent attributes
// never hides one that was set: a lookup racing a SetXattr may miss, but
// one that starts after SetXattr returned finds the value.
func TestXattrAbsentRemembered(t *testing.T) {
	tp := newTestPool(t, 1, 1)
	n, err := tp.Make(RootIno, "f", NodeSpec{Mode: 0o644}, Caller{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tp.GetXattr(n.Ino, "user.a"); !errors.Is(err, ErrNoAttr) {
		t.Fatalf("get before set: %v, want ErrNoAttr", err)
	}
	if _, err := tp.GetXattr(n.Ino, "user.a"); !errors.Is(err, ErrNoAttr) {
		t.Fatalf("get remembered absent: %v, want ErrNoAttr", err)
	}
	if err := tp.SetXattr(n.Ino, "user.a", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	if v, err := tp.GetXattr(n.Ino, "user.a"); err != nil || string(v) != "v" {
		t.Fatalf("get after set: %q, %v", v, err)
	}

	// A lookup that missed before a SetXattr committed does not record the
	// miss after it.
	tp.absent.beforeMiss = func() {
		tp.absent.beforeMiss = nil
		if err := tp.SetXattr(n.Ino, "user.b", []byte("w"), 0); err != nil {
			t.Error(err)
		}
	}
	if _, err := tp.GetXattr(n.Ino, "user.b"); !errors.Is(err, ErrNoAttr) {
		t.Fatalf("get racing set: %v, want ErrNoAttr", err)
	}
	if v, err := tp.GetXattr(n.Ino, "user.b"); err != nil || string(v) != "w" {
		t.Fatalf("get after a set that raced a miss: %q, %v", v, err)
	}

	// Readers hammer names while a writer sets them one by one; after each
	// set, a fresh lookup must see it.
	const names = 200
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for r := 0; r < 4; r++ {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				_, err := tp.GetXattr(n.Ino, fmt.Sprintf("user.n%d", i%names))
				if err != nil && !errors.Is(err, ErrNoAttr) {
					t.Error(err)
					return
				}
			}
		})
	}
	for i := 0; i < names; i++ {
		name := fmt.Sprintf("user.n%d", i)
		if err := tp.SetXattr(n.Ino, name, []byte(name), 0); err != nil {
			t.Fatal(err)
		}
		if v, err := tp.GetXattr(n.Ino, name); err != nil || string(v) != name {
			t.Fatalf("get %s after set: %q, %v", name, v, err)
		}
	}
	close(stop)
	wg.Wait()
	for i := 0; i < names; i++ {
		name := fmt.Sprintf("user.n%d", i)
		if v, err := tp.GetXattr(n.Ino, name); err != nil || string(v) != name {
			t.Fatalf("get %s at the end: %q, %v", name, v, err)
		}
	}
	if err := tp.RemoveXattr(n.Ino, "user.a"); err != nil {
		t.Fatal(err)
	}
	if _, err := tp.GetXattr(n.Ino, "user.a"); !errors.Is(err, ErrNoAttr) {
		t.Fatalf("get after remove: %v, want ErrNoAttr", err)
	}
}
