package cluster

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
)

// Benchmarks of the write and read paths without FUSE, on real Badger
// drives in a temp dir (3 drives, replicas 2, 1 MiB chunks). Data is
// random and unique per iteration, so deduplication does not help.

func benchPool(b *testing.B) *testPool {
	return newTestPoolTB(b, 3, 2, DefaultChunkSize)
}

const benchSize = 64 << 20

func BenchmarkPutFile(b *testing.B) {
	onDisk(b) // what a real pool costs
	tp := benchPool(b)
	data := randBytes(1, benchSize)
	b.SetBytes(benchSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		data[0], data[1<<20], data[2<<20] = byte(i), byte(i>>8), byte(i>>16) // unique chunks
		for c := 0; c < benchSize; c += DefaultChunkSize {
			data[c+7] = byte(i)
			data[c+8] = byte(i >> 8)
		}
		if _, err := tp.PutFile(context.Background(), fmt.Sprintf("/f%d", i), bytes.NewReader(data), 0o644, Caller{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGetFile(b *testing.B) {
	onDisk(b) // what a real pool costs
	tp := benchPool(b)
	tp.put("/f", randBytes(2, benchSize))
	b.SetBytes(benchSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := tp.GetFile(context.Background(), "/f", io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadAtRandom4K(b *testing.B) {
	onDisk(b) // what a real pool costs
	tp := benchPool(b)
	n := tp.put("/f", randBytes(3, benchSize))
	r := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 4096)
	b.SetBytes(4096)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		off := r.Int64N(benchSize-4096) &^ 4095
		if _, err := tp.ReadAt(context.Background(), n.Ino, buf, off); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpenFileSequential reads a file through an open File in the
// kernel's 1 MiB requests, as the mount does (ReadShared), without FUSE.
// The cache holds a quarter of the file, so every pass fetches chunks
// from the drives (through the page cache) in the background read-ahead.
func BenchmarkOpenFileSequential(b *testing.B) {
	onDisk(b) // what a real pool costs
	tp := newTestPoolWith(b, 3, 2, DefaultChunkSize, Options{CacheBytes: benchSize / 4})
	n := tp.put("/f", randBytes(4, benchSize))
	f, err := tp.OpenFile(n.Ino)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close(context.Background())
	buf := make([]byte, 1<<20)
	b.SetBytes(benchSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for off := int64(0); off < benchSize; off += int64(len(buf)) {
			_, _, done, err := f.ReadShared(context.Background(), buf, off)
			done()
			if err != nil && err != io.EOF {
				b.Fatal(err)
			}
		}
	}
}
