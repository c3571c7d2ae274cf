// Package kvtest is the conformance suite of the kv.Engine contract. Every
// engine's tests run it:
//
//	kvtest.Run(t, kvtest.Harness{Open: func(t *testing.T) kv.Engine { ... }})
package kvtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/dhdfs/dhdfs/cluster/kv"
)

// Harness opens engines for the suite.
type Harness struct {
	// Open returns a new, empty engine; the suite closes it.
	Open func(t *testing.T) kv.Engine
	// Reopen, for a durable engine, closes e and opens the same store
	// again. Nil for an engine that keeps nothing.
	Reopen func(t *testing.T, e kv.Engine) kv.Engine
}

// Run runs every conformance test against the engine h opens.
func Run(t *testing.T, h Harness) {
	tests := []struct {
		name string
		fn   func(*testing.T, Harness)
	}{
		{"GetSetDelete", testGetSetDelete},
		{"ReadYourWrites", testReadYourWrites},
		{"Atomicity", testAtomicity},
		{"ScanOrderAndBounds", testScan},
		{"SnapshotViews", testSnapshot},
		{"NoLostUpdates", testNoLostUpdates},
		{"ConflictOnKey", func(t *testing.T, h Harness) { testConflict(t, h, readKey) }},
		{"ConflictOnAbsentKey", func(t *testing.T, h Harness) { testConflict(t, h, readAbsent) }},
		{"ConflictOnScannedRangeInsert", func(t *testing.T, h Harness) { testConflict(t, h, scanInsert) }},
		{"ConflictOnScannedRangeDelete", func(t *testing.T, h Harness) { testConflict(t, h, scanDelete) }},
		{"NotAliased", testNotAliased},
		{"Limits", testLimits},
		{"Durable", testDurable},
		{"Closed", testClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, h) })
	}
}

func open(t *testing.T, h Harness) kv.Engine {
	t.Helper()
	e := h.Open(t)
	t.Cleanup(func() { e.Close() })
	return e
}

var ctx = context.Background()

func set(t *testing.T, e kv.Engine, kvs ...string) {
	t.Helper()
	err := kv.Update(ctx, e, func(tx kv.Txn) error {
		for i := 0; i+1 < len(kvs); i += 2 {
			if err := tx.Set([]byte(kvs[i]), []byte(kvs[i+1])); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// get returns key's value, or "<absent>".
func get(t *testing.T, e kv.Engine, key string) string {
	t.Helper()
	var out string
	err := e.View(ctx, func(r kv.Reader) error {
		v, err := r.Get([]byte(key))
		if errors.Is(err, kv.ErrNotFound) {
			out = "<absent>"
			return nil
		}
		out = string(v)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// scan returns the keys (and values, as k=v) of [start, end).
func scan(t *testing.T, r kv.Reader, start, end string, opts kv.ScanOptions) []string {
	t.Helper()
	var e []byte
	if end != "" {
		e = []byte(end)
	}
	var out []string
	err := r.Scan([]byte(start), e, opts, func(k, v []byte) error {
		if opts.KeysOnly {
			if v != nil {
				return fmt.Errorf("KeysOnly scan gave value %q for %q", v, k)
			}
			out = append(out, string(k))
		} else {
			out = append(out, string(k)+"="+string(v))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func viewScan(t *testing.T, e kv.Engine, start, end string, opts kv.ScanOptions) []string {
	t.Helper()
	var out []string
	if err := e.View(ctx, func(r kv.Reader) error { out = scan(t, r, start, end, opts); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func same(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func testGetSetDelete(t *testing.T, h Harness) {
	e := open(t, h)
	if got := get(t, e, "a"); got != "<absent>" {
		t.Fatalf("empty engine: a = %q", got)
	}
	set(t, e, "a", "1", "b", "2", "empty", "")
	if a, b, em := get(t, e, "a"), get(t, e, "b"), get(t, e, "empty"); a != "1" || b != "2" || em != "" {
		t.Fatalf("a=%q b=%q empty=%q", a, b, em)
	}
	set(t, e, "a", "3")
	err := kv.Update(ctx, e, func(tx kv.Txn) error {
		if err := tx.Delete([]byte("b")); err != nil {
			return err
		}
		return tx.Delete([]byte("never-there"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if a, b := get(t, e, "a"), get(t, e, "b"); a != "3" || b != "<absent>" {
		t.Fatalf("after overwrite and delete: a=%q b=%q", a, b)
	}
	err = kv.Update(ctx, e, func(tx kv.Txn) error { return tx.Set(nil, []byte("x")) })
	if err == nil {
		t.Fatal("an empty key was accepted")
	}
}

func testReadYourWrites(t *testing.T, h Harness) {
	e := open(t, h)
	set(t, e, "a", "1", "c", "3")
	err := kv.Update(ctx, e, func(tx kv.Txn) error {
		tx.Set([]byte("b"), []byte("2"))
		tx.Delete([]byte("c"))
		tx.Set([]byte("a"), []byte("new"))
		if v, err := tx.Get([]byte("b")); err != nil || string(v) != "2" {
			return fmt.Errorf("own write b: %q %v", v, err)
		}
		if _, err := tx.Get([]byte("c")); !errors.Is(err, kv.ErrNotFound) {
			return fmt.Errorf("own delete c: %v", err)
		}
		if got := scan(t, tx, "", "", kv.ScanOptions{}); !same(got, []string{"a=new", "b=2"}) {
			return fmt.Errorf("scan inside the transaction: %q", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func testAtomicity(t *testing.T, h Harness) {
	e := open(t, h)
	set(t, e, "a", "1")
	boom := errors.New("boom")
	err := kv.Update(ctx, e, func(tx kv.Txn) error {
		tx.Set([]byte("a"), []byte("2"))
		tx.Set([]byte("b"), []byte("2"))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update returned %v, want fn's error", err)
	}
	if a, b := get(t, e, "a"), get(t, e, "b"); a != "1" || b != "<absent>" {
		t.Fatalf("a failed transaction left a=%q b=%q", a, b)
	}
	// Writers racing readers: a reader sees both keys of a transaction or
	// neither.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			v := strconv.Itoa(i)
			if err := kv.Update(ctx, e, func(tx kv.Txn) error {
				if err := tx.Set([]byte("x"), []byte(v)); err != nil {
					return err
				}
				return tx.Set([]byte("y"), []byte(v))
			}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		err := e.View(ctx, func(r kv.Reader) error {
			x, err1 := r.Get([]byte("x"))
			y, err2 := r.Get([]byte("y"))
			if !bytes.Equal(x, y) || (err1 == nil) != (err2 == nil) {
				return fmt.Errorf("torn transaction: x=%q (%v) y=%q (%v)", x, err1, y, err2)
			}
			return nil
		})
		if err != nil {
			t.Error(err)
			break
		}
	}
	close(stop)
	wg.Wait()
}

func testScan(t *testing.T, h Harness) {
	e := open(t, h)
	keys := []string{"a", "ab", "abc", "b", "b\x00", "b\xff", "c", "\xff"}
	var kvs []string
	for i := len(keys) - 1; i >= 0; i-- { // written out of order
		kvs = append(kvs, keys[i], "v"+strconv.Itoa(i))
	}
	set(t, e, kvs...)
	check := func(start, end string, opts kv.ScanOptions, want ...string) {
		t.Helper()
		if got := viewScan(t, e, start, end, opts); !same(got, want) {
			t.Fatalf("scan [%q, %q) %+v: %q, want %q", start, end, opts, got, want)
		}
	}
	check("", "", kv.ScanOptions{KeysOnly: true}, keys...)
	check("a", "b", kv.ScanOptions{}, "a=v0", "ab=v1", "abc=v2")
	check("ab", "b\x00", kv.ScanOptions{KeysOnly: true}, "ab", "abc", "b")
	check("b", "", kv.ScanOptions{KeysOnly: true}, "b", "b\x00", "b\xff", "c", "\xff")
	check("b", "", kv.ScanOptions{KeysOnly: true, Limit: 2}, "b", "b\x00")
	check("aa", "ab", kv.ScanOptions{})
	check("c", "c", kv.ScanOptions{})
	check("zz", "", kv.ScanOptions{KeysOnly: true}, "\xff")
	stop := errors.New("stop")
	n := 0
	err := e.View(ctx, func(r kv.Reader) error {
		return r.Scan(nil, nil, kv.ScanOptions{}, func(k, v []byte) error {
			if n++; n == 3 {
				return stop
			}
			return nil
		})
	})
	if !errors.Is(err, stop) || n != 3 {
		t.Fatalf("a scan whose callback failed at the third key: %v after %d keys", err, n)
	}
	// A transaction may write while it scans.
	err = kv.Update(ctx, e, func(tx kv.Txn) error {
		return tx.Scan([]byte("a"), []byte("b"), kv.ScanOptions{KeysOnly: true}, func(k, _ []byte) error {
			return tx.Delete(k)
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	check("", "b", kv.ScanOptions{KeysOnly: true})
}

func testSnapshot(t *testing.T, h Harness) {
	e := open(t, h)
	set(t, e, "a", "1", "b", "1")
	err := e.View(ctx, func(r kv.Reader) error {
		if _, err := r.Get([]byte("a")); err != nil {
			return err
		}
		done := make(chan error, 1)
		go func() {
			done <- kv.Update(ctx, e, func(tx kv.Txn) error {
				tx.Set([]byte("a"), []byte("2"))
				tx.Set([]byte("c"), []byte("2"))
				return tx.Delete([]byte("b"))
			})
		}()
		select {
		case err := <-done:
			if err != nil {
				return err
			}
		case <-time.After(10 * time.Second):
			return errors.New("a write waited for a view to end")
		}
		a, err := r.Get([]byte("a"))
		if err != nil || string(a) != "1" {
			return fmt.Errorf("view saw a=%q (%v) after a later commit", a, err)
		}
		if got := scan(t, r, "", "", kv.ScanOptions{}); !same(got, []string{"a=1", "b=1"}) {
			return fmt.Errorf("view scanned %q after a later commit", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := viewScan(t, e, "", "", kv.ScanOptions{}); !same(got, []string{"a=2", "c=2"}) {
		t.Fatalf("a new view: %q", got)
	}
}

func testNoLostUpdates(t *testing.T, h Harness) {
	e := open(t, h)
	const workers, each = 4, 25
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				err := kv.Update(ctx, e, func(tx kv.Txn) error {
					n := 0
					v, err := tx.Get([]byte("counter"))
					if err == nil {
						n, _ = strconv.Atoi(string(v))
					} else if !errors.Is(err, kv.ErrNotFound) {
						return err
					}
					return tx.Set([]byte("counter"), []byte(strconv.Itoa(n+1)))
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if got := get(t, e, "counter"); got != strconv.Itoa(workers*each) {
		t.Fatalf("%d increments left the counter at %s", workers*each, got)
	}
}

// A conflict scenario: what the first transaction reads, and what the
// second then changes under it.
type conflictCase struct {
	read   func(tx kv.Txn) error
	change func(tx kv.Txn) error
}

var (
	readKey = conflictCase{
		read:   func(tx kv.Txn) error { _, err := tx.Get([]byte("k")); return err },
		change: func(tx kv.Txn) error { return tx.Set([]byte("k"), []byte("changed")) },
	}
	readAbsent = conflictCase{
		read: func(tx kv.Txn) error {
			// Absent the first time; a retry finds the second's write.
			if _, err := tx.Get([]byte("absent")); err != nil && !errors.Is(err, kv.ErrNotFound) {
				return err
			}
			return nil
		},
		change: func(tx kv.Txn) error { return tx.Set([]byte("absent"), []byte("now here")) },
	}
	scanInsert = conflictCase{
		read: func(tx kv.Txn) error {
			return tx.Scan([]byte("r/"), []byte("r0"), kv.ScanOptions{}, func(k, v []byte) error { return nil })
		},
		change: func(tx kv.Txn) error { return tx.Set([]byte("r/new"), nil) },
	}
	scanDelete = conflictCase{
		read: func(tx kv.Txn) error {
			return tx.Scan([]byte("r/"), []byte("r0"), kv.ScanOptions{}, func(k, v []byte) error { return nil })
		},
		change: func(tx kv.Txn) error { return tx.Delete([]byte("r/1")) },
	}
)

// testConflict runs a transaction that reads as c says and then, while it
// is still open, lets a second one change what it read. An engine that
// runs both at once must refuse the first (ErrConflict); one that makes
// the second wait must run it after the first. Either way both land, and
// a retried first transaction sees the second's change.
func testConflict(t *testing.T, h Harness, c conflictCase) {
	e := open(t, h)
	set(t, e, "k", "orig", "r/1", "", "r/2", "")
	attempts := 0
	var second chan error
	var sawChange bool
	err := kv.Update(ctx, e, func(tx kv.Txn) error {
		attempts++
		if err := c.read(tx); err != nil {
			return err
		}
		if attempts == 1 {
			second = make(chan error, 1)
			go func() { second <- kv.Update(ctx, e, c.change) }()
			select {
			case err := <-second:
				if err != nil {
					return err
				}
				second = nil
			case <-time.After(200 * time.Millisecond):
				// The engine serialises writers: the second runs later.
			}
		} else {
			sawChange = true
		}
		return tx.Set([]byte("first"), []byte(strconv.Itoa(attempts)))
	})
	if err != nil {
		t.Fatal(err)
	}
	if second != nil {
		if err := <-second; err != nil {
			t.Fatal(err)
		}
		t.Logf("the engine serialised the writers")
	} else if attempts < 2 || !sawChange {
		t.Fatalf("a transaction whose reads changed before it committed was not retried (attempts %d)", attempts)
	}
	if get(t, e, "first") == "<absent>" {
		t.Fatal("the first transaction's write is missing")
	}
}

func testNotAliased(t *testing.T, h Harness) {
	e := open(t, h)
	key, val := []byte("key"), []byte("value")
	err := kv.Update(ctx, e, func(tx kv.Txn) error {
		if err := tx.Set(key, val); err != nil {
			return err
		}
		copy(key, "KEY")
		copy(val, "VALUE")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, other := get(t, e, "key"), get(t, e, "KEY"); got != "value" || other != "<absent>" {
		t.Fatalf("buffers changed after Set reached the store: key=%q KEY=%q", got, other)
	}
	var kept []byte
	err = kv.Update(ctx, e, func(tx kv.Txn) error {
		v, err := tx.Get([]byte("key"))
		kept = v
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	set(t, e, "key", "other")
	if string(kept) != "value" {
		t.Fatalf("a value got in a transaction changed after it: %q", kept)
	}
	copy(kept, "XXXXX")
	if got := get(t, e, "key"); got != "other" {
		t.Fatalf("changing a value got from the store changed the store: %q", got)
	}
}

func testLimits(t *testing.T, h Harness) {
	e := open(t, h)
	l := e.Limits()
	if l.MaxTxnKeys < 64 || l.MaxTxnBytes < 64<<10 || l.MaxKeyBytes < 256 || l.MaxValueBytes < 64<<10 || l.MaxTxnReads < 0 {
		t.Fatalf("limits too small for the pool's metadata: %+v", l)
	}
	set(t, e, "keep", "1")
	tooBig := func(name string, fn func(tx kv.Txn) error) {
		t.Helper()
		err := kv.Update(ctx, e, func(tx kv.Txn) error {
			tx.Set([]byte("keep"), []byte("2"))
			return fn(tx)
		})
		if !errors.Is(err, kv.ErrTooBig) {
			t.Fatalf("%s: %v, want ErrTooBig", name, err)
		}
		if got := get(t, e, "keep"); got != "1" {
			t.Fatalf("%s: a transaction refused as too big changed keep to %q", name, got)
		}
	}
	tooBig("a key too long", func(tx kv.Txn) error { return tx.Set(make([]byte, l.MaxKeyBytes+1), nil) })
	if l.MaxValueBytes <= 64<<20 {
		tooBig("a value too long", func(tx kv.Txn) error { return tx.Set([]byte("v"), make([]byte, l.MaxValueBytes+1)) })
	}
	if l.MaxTxnKeys <= 1<<20 {
		tooBig("too many keys", func(tx kv.Txn) error {
			for i := 0; i <= l.MaxTxnKeys; i++ {
				if err := tx.Set([]byte(fmt.Sprintf("n/%08d", i)), nil); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if l.MaxTxnBytes <= 256<<20 {
		chunk := min(l.MaxValueBytes, 1<<20)
		tooBig("too many bytes", func(tx kv.Txn) error {
			for i := 0; i*chunk <= l.MaxTxnBytes; i++ {
				if err := tx.Set([]byte(fmt.Sprintf("b/%08d", i)), make([]byte, chunk)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if l.MaxTxnReads > 0 {
		tooBig("too many reads", func(tx kv.Txn) error {
			for i := 0; i <= l.MaxTxnReads; i++ {
				if _, err := tx.Get([]byte(fmt.Sprintf("n/%08d", i))); err != nil && !errors.Is(err, kv.ErrNotFound) {
					return err
				}
			}
			return nil
		})
	}
	// Just under every limit is fine.
	err := kv.Update(ctx, e, func(tx kv.Txn) error {
		for i := 0; i < min(l.MaxTxnKeys, 1000)-1; i++ {
			if err := tx.Set([]byte(fmt.Sprintf("ok/%08d", i)), []byte("v")); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("a transaction within the limits: %v", err)
	}
}

func testDurable(t *testing.T, h Harness) {
	if h.Reopen == nil {
		t.Skip("the engine keeps nothing")
	}
	e := h.Open(t)
	set(t, e, "a", "1", "b", "2")
	set(t, e, "a", "3")
	if err := e.Sync(); err != nil {
		t.Fatal(err)
	}
	e = h.Reopen(t, e)
	defer e.Close()
	if got := viewScan(t, e, "", "", kv.ScanOptions{}); !same(got, []string{"a=3", "b=2"}) {
		t.Fatalf("after reopening: %q", got)
	}
}

func testClosed(t *testing.T, h Harness) {
	e := h.Open(t)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.View(ctx, func(kv.Reader) error { return nil }); !errors.Is(err, kv.ErrClosed) {
		t.Fatalf("View after Close: %v", err)
	}
	if err := kv.Update(ctx, e, func(kv.Txn) error { return nil }); !errors.Is(err, kv.ErrClosed) {
		t.Fatalf("Update after Close: %v", err)
	}
}
