package nodes

// A drive's Badger holds only chunk keys and small values in memory, so
// small memtables and block cache suffice (see badgerOptions). StoreMemory
// is what one store may hold at once, for the pool's memory budget.
const (
	storeMemtable   = 4 << 20
	storeMemtables  = 2
	storeBlockCache = 2 << 20
	StoreMemory     = storeMemtable*storeMemtables + storeBlockCache
)
