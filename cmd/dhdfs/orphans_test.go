package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Issue 12: a drive taken offline and back online, again and again, while
// files are overwritten through the mount. Copies the overwrites made
// garbage on the drive while it was away must be deleted when it
// returns: after a clean unmount fsck finds nothing, status is healthy,
// and every file holds what was last written.
func TestOfflineOnlineOverwriteLeavesNoOrphans(t *testing.T) {
	e := newEnv(t)
	e.ok("init", "--chunk-size", "64KiB")
	e.drives(4)
	// A short heal-after makes the healer forget d2's copies while it is
	// away as well, the other way copies became orphans.
	mnt := e.mountDaemon("--heal-every", "300ms", "--heal-after", "200ms")

	const files, writers = 8, 2
	var mu sync.Mutex
	last := map[string][]byte{} // guarded by mu
	stop := make(chan struct{})
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 12))
			// Each writer owns the files i ≡ w (mod writers): what it
			// wrote last is what the file holds.
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("f%d", (i*writers+w)%files)
				data := make([]byte, (1+r.IntN(5))<<16+r.IntN(5000))
				for j := range data {
					data[j] = byte(r.Uint32())
				}
				if err := os.WriteFile(filepath.Join(mnt, name), data, 0o644); err != nil {
					errs <- fmt.Errorf("write %s: %w", name, err)
					return
				}
				mu.Lock()
				last[name] = data
				mu.Unlock()
			}
		}()
	}
	for round := 0; round < 5; round++ {
		time.Sleep(150 * time.Millisecond)
		e.ok("node", "offline", "d2")
		time.Sleep(400 * time.Millisecond)
		e.ok("node", "online", "d2")
	}
	time.Sleep(150 * time.Millisecond)
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	e.ok("umount", mnt)

	out, stderr, code := e.run(nil, "fsck")
	if code != 0 || !strings.Contains(out, ": 0 problems") {
		lines := strings.Split(out, "\n")
		if len(lines) > 12 {
			lines = append(lines[:10], fmt.Sprintf("... %d lines", len(lines)))
		}
		t.Fatalf("fsck after a clean unmount: exit %d, %s\n%s", code, stderr, strings.Join(lines, "\n"))
	}
	if st := e.ok("status"); !strings.Contains(st, "Health:    healthy") {
		t.Fatalf("status after a clean unmount:\n%s", st)
	}
	if len(last) != files {
		t.Fatalf("only %d of %d files were written", len(last), files)
	}
	for name, data := range last {
		got, _, code := e.run(nil, "get", "/"+name, "-")
		if code != 0 || !bytes.Equal([]byte(got), data) {
			t.Fatalf("/%s: exit %d, %d bytes read, %d written", name, code, len(got), len(data))
		}
	}
}
