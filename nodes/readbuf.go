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

// GetInto is s.Get(id, buf) for a caller that gives buf up if the read
// fails with ErrTimeout, neither reading nor reusing it afterwards: a
// store behind WithTimeout then reads into buf itself, where Get reads
// into a buffer of its own and copies, in case the caller reuses buf
// while a late read still fills it.
func GetInto(s Store, id ChunkID, buf []byte) ([]byte, error) {
	if g, ok := s.(intoGetter); ok {
		return g.GetInto(id, buf)
	}
	return s.Get(id, buf)
}

// intoGetter is a store, or a wrapper of one, with GetInto of its own.
type intoGetter interface {
	GetInto(id ChunkID, buf []byte) ([]byte, error)
}
