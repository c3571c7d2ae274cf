package nodes

import "sync"

// readBufs recycles the buffers chunk reads go into: a random read of a
// block would otherwise allocate (and zero) 64 KiB each time.
var readBufs sync.Pool // of *[]byte

// ReadBuf returns an empty buffer, from the pool when one there holds at
// least n bytes. Stores append to it, growing it if it is short.
func ReadBuf(n int) []byte {
	if p, ok := readBufs.Get().(*[]byte); ok && cap(*p) >= n {
		return (*p)[:0]
	}
	return make([]byte, 0, n)
}

// RecycleReadBuf returns b to the pool; nothing may use it afterwards.
func RecycleReadBuf(b []byte) {
	if cap(b) > 0 {
		readBufs.Put(&b)
	}
}
