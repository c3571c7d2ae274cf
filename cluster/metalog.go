package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dhdfs/dhdfs/cluster/kv"
)

// Every write transaction of the metadata store is numbered (metaSeqKey,
// written by the transaction itself) and its changes are captured as
// key/value mutations. Transactions are serialised, so the numbers are
// the commit order, and the store on disk after a crash is always the
// state after some transaction n: Badger replays its write-ahead log up
// to the first torn entry. Mutations are absolute (set this value, delete
// this key), so applying the captured transactions after n, in order,
// onto that state gives exactly the state after the last of them. That
// is what lets a sync round make metadata durable by writing the
// mutations into the drives' journals (journal.go) instead of syncing the
// metadata store's own files.

// mutation is one change of a write transaction.
type mutation struct {
	Key, Val []byte
	Del      bool
}

// metaBatch is the mutations of write transaction Seq.
type metaBatch struct {
	Seq  uint64
	Muts []mutation
}

// seqNow returns the number of the last write transaction.
func (m *metaDB) seqNow() uint64 {
	m.writeMu.Lock()
	defer m.writeMu.Unlock()
	return m.seq
}

// setLogged installs fn to receive every write transaction's mutations
// from now on (nil: none).
func (m *metaDB) setLogged(fn func(seq uint64, muts []mutation)) {
	m.writeMu.Lock()
	m.logged = fn
	m.writeMu.Unlock()
}

// apply replays batch b onto the store as one transaction, if it is the
// next one the store lacks (its number is one after the store's).
func (m *metaDB) apply(b metaBatch) (bool, error) {
	m.writeMu.Lock()
	defer m.writeMu.Unlock()
	if b.Seq != m.seq+1 {
		return false, nil
	}
	err := kv.Update(context.Background(), m.eng, func(txn kv.Txn) error {
		if err := writeMuts(txn, b.Muts); err != nil {
			return fmt.Errorf("replay metadata: %w", err)
		}
		return txn.Set(metaSeqKey, binary.BigEndian.AppendUint64(nil, b.Seq))
	})
	if err != nil {
		return false, err
	}
	m.seq = b.Seq
	m.changes.Add(1)
	return true, nil
}

// appendBatch encodes b onto buf.
func appendBatch(buf []byte, b metaBatch) []byte {
	buf = binary.AppendUvarint(buf, b.Seq)
	buf = binary.AppendUvarint(buf, uint64(len(b.Muts)))
	for _, mu := range b.Muts {
		if mu.Del {
			buf = append(buf, 1)
		} else {
			buf = append(buf, 0)
		}
		buf = binary.AppendUvarint(buf, uint64(len(mu.Key)))
		buf = append(buf, mu.Key...)
		if !mu.Del {
			buf = binary.AppendUvarint(buf, uint64(len(mu.Val)))
			buf = append(buf, mu.Val...)
		}
	}
	return buf
}

// readBatch decodes one batch from d.
func readBatch(d *decoder) metaBatch {
	var b metaBatch
	b.Seq = d.uvarint()
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return b
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		var mu mutation
		mu.Del = d.byte1() == 1
		mu.Key = append([]byte(nil), d.bytes(d.uvarint())...)
		if !mu.Del {
			mu.Val = append([]byte(nil), d.bytes(d.uvarint())...)
		}
		b.Muts = append(b.Muts, mu)
	}
	return b
}

// writeMuts applies muts to txn in order.
func writeMuts(txn kv.Txn, muts []mutation) error {
	for _, mu := range muts {
		var err error
		if mu.Del {
			err = txn.Delete(mu.Key)
		} else {
			err = txn.Set(mu.Key, mu.Val)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// errLoad wraps a failure to write what a mirror segment holds (as
// opposed to a segment found damaged).
var errLoad = errors.New("load metadata")

// load writes muts into the store as they are, in transactions as large
// as the engine takes, neither numbered nor logged: it fills a new store
// from the mirror, which nothing else uses meanwhile.
func (m *metaDB) load(muts []mutation) error {
	l := m.eng.Limits()
	for len(muts) > 0 {
		n, size := 0, 0
		for n < len(muts) && n < l.MaxTxnKeys-1 {
			size += len(muts[n].Key) + len(muts[n].Val)
			if n > 0 && size > l.MaxTxnBytes-64 {
				break
			}
			n++
		}
		part := muts[:n]
		err := kv.Update(context.Background(), m.eng, func(txn kv.Txn) error { return writeMuts(txn, part) })
		if err != nil {
			return fmt.Errorf("%w: %w", errLoad, homeDamage(m.dir, err))
		}
		muts = muts[n:]
	}
	return nil
}

// loaded numbers the store that load filled: after transaction seq, or
// (0) as the loaded metadata says.
func (m *metaDB) loaded(seq uint64) error {
	m.writeMu.Lock()
	defer m.writeMu.Unlock()
	err := kv.Update(context.Background(), m.eng, func(txn kv.Txn) error {
		if seq == 0 {
			v, ok, err := get(txn, metaSeqKey)
			if ok && len(v) == 8 {
				seq = binary.BigEndian.Uint64(v)
			}
			return err
		}
		return txn.Set(metaSeqKey, binary.BigEndian.AppendUint64(nil, seq))
	})
	if err != nil {
		return fmt.Errorf("%w: %w", errLoad, err)
	}
	m.seq = seq
	return nil
}
