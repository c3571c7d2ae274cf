package badgerlog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// A warning or error Badger repeats (a store whose directory is gone
// retries its flush every second) is logged once per repeatQuiet, then
// with how many were held back.
func TestBadgerLogQuietsRepeats(t *testing.T) {
	var out bytes.Buffer
	l := New(slog.New(slog.NewTextHandler(&out, nil)))
	for range 10 {
		l.Errorf("error flushing memtable to disk: %v, retrying", "no such file or directory")
	}
	l.Warningf("another warning %d", 1)
	l.Debugf("debug is not counted")
	if n := strings.Count(out.String(), "error flushing memtable"); n != 1 {
		t.Fatalf("a repeated error logged %d times: %s", n, out.String())
	}
	if !strings.Contains(out.String(), "another warning 1") {
		t.Fatalf("another message was held back: %s", out.String())
	}
	r := &repeats{last: map[string]*repeat{}}
	now := time.Now()
	if ok, _ := r.allow("f", now); !ok {
		t.Fatal("the first message was held back")
	}
	for i := range 5 {
		if ok, _ := r.allow("f", now.Add(time.Duration(i+1)*time.Second)); ok {
			t.Fatal("a repeat within repeatQuiet was logged")
		}
	}
	if ok, held := r.allow("f", now.Add(repeatQuiet+time.Second)); !ok || held != 5 {
		t.Fatalf("after repeatQuiet: logged %v, held %d, want true and 5", ok, held)
	}
}
