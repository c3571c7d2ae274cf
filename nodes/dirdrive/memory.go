package dirdrive

import "github.com/dhdfs/dhdfs/nodes"

// A drive's Badger holds only chunk keys and small values in memory, so
// small memtables and block cache suffice (see badgerOptions), within
// what the pool allows each store (nodes.StoreMemory).
const (
	storeMemtable   = 4 << 20
	storeMemtables  = 2
	storeBlockCache = 2 << 20
)

// A compile-time check: the conversion fails if the store could use more
// than its allowance.
const _ = uint64(nodes.StoreMemory - (storeMemtable*storeMemtables + storeBlockCache))

// storeDir is the Badger directory inside a drive directory.
const storeDir = "chunks"
