package nodes

import (
	"testing"
	"time"
)

// BenchmarkWithin measures what the deadline adds to each drive call.
func BenchmarkWithin(b *testing.B) {
	t := &timeoutStore{limit: time.Second, jobs: make(chan func())}
	for i := 0; i < b.N; i++ {
		within(t, "x", func() (int, error) { return 1, nil })
	}
}
