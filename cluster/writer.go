package cluster

import (
	"context"
	"fmt"
	"sync"

	"github.com/dhdfs/dhdfs/nodes"
)

// commitEvery is how many finished chunks a Writer accumulates before it
// syncs their drives and records them: the metadata never points at a copy
// that a power cut could still lose, and the fsyncs stay few.
const commitEvery = 32

// Writer streams data into a file from offset zero, chunk by chunk, with a
// bounded number of chunks replicating in parallel. Its memory is bounded
// by (WritesInFlight+1) chunks, whatever the file's size. It is not safe
// for concurrent use.
type Writer struct {
	m    *Manager
	ctx  context.Context
	ino  Ino
	want int

	buf  []byte // the chunk being filled
	idx  int64  // index of buf's chunk
	size int64  // bytes accepted so far
	sem  chan []byte
	wg   sync.WaitGroup

	mu      sync.Mutex
	done    []slot          // guarded by mu: staged, not yet committed
	touched map[uint32]bool // guarded by mu: drives written since the last sync
	err     error           // guarded by mu: first failure
}

// newWriter starts writing into ino, which must be an empty regular file.
func (m *Manager) newWriter(ctx context.Context, ino Ino, want int) *Writer {
	w := &Writer{m: m, ctx: ctx, ino: ino, want: want, touched: map[uint32]bool{},
		sem: make(chan []byte, m.opts.WritesInFlight)}
	for i := 0; i < m.opts.WritesInFlight; i++ {
		w.sem <- nil // buffers are made lazily, so small files stay small
	}
	return w
}

func (w *Writer) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Write implements io.Writer.
func (w *Writer) Write(p []byte) (int, error) {
	cs := w.m.cfg.ChunkSize
	n := 0
	for len(p) > 0 {
		if err := w.failed(); err != nil {
			return n, err
		}
		if w.buf == nil {
			w.buf = <-w.sem
			if w.buf == nil {
				w.buf = make([]byte, 0, cs)
			}
			w.buf = w.buf[:0]
		}
		c := copy(w.buf[len(w.buf):cs], p)
		w.buf = w.buf[:len(w.buf)+c]
		p, n, w.size = p[c:], n+c, w.size+int64(c)
		if len(w.buf) == cs {
			w.dispatch()
		}
		if w.pending() >= commitEvery {
			if err := w.commit(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

func (w *Writer) pending() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.done)
}

// dispatch replicates the full (or final) buffer in the background.
func (w *Writer) dispatch() {
	buf, idx := w.buf, w.idx
	w.buf, w.idx = nil, w.idx+1
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		st, err := w.m.storeChunk(w.ctx, buf, w.want, 1, false)
		if st.Escaped {
			buf = nil // a timed-out Put may still read it: never reuse it
		}
		w.sem <- buf
		w.mu.Lock()
		defer w.mu.Unlock()
		if err != nil {
			if w.err == nil {
				w.err = err
			}
			return
		}
		w.done = append(w.done, slot{Idx: idx, Layers: layers{wholePiece(st.Ref)}})
		for _, t := range st.Touched {
			w.touched[t] = true
		}
	}()
}

// commit syncs the drives written since the last commit and records the
// finished chunks in the file.
func (w *Writer) commit() error {
	w.mu.Lock()
	done, touched := w.done, w.touched
	w.done, w.touched = nil, map[uint32]bool{}
	w.mu.Unlock()
	if len(done) == 0 {
		return nil
	}
	nums := make([]uint32, 0, len(touched))
	for t := range touched {
		nums = append(nums, t)
	}
	err := w.m.syncDrives(nums)
	if err == nil {
		end := int64(0)
		for _, s := range done {
			end = max(end, s.Idx*int64(w.m.cfg.ChunkSize)+int64(s.Layers.length()))
		}
		// Synced already: the slots are settled at once.
		err = w.m.commitLayers(w.ino, done, end, true, true, nil)
	}
	if err != nil {
		w.release(done)
		w.mu.Lock()
		if w.err == nil {
			w.err = err
		}
		w.mu.Unlock()
	}
	return err
}

func (w *Writer) release(slots []slot) {
	var ids []nodes.ChunkID
	for _, s := range slots {
		for _, r := range s.Layers.refs() {
			ids = append(ids, r.ID)
		}
	}
	if err := w.m.releaseChunks(ids); err != nil {
		w.m.log.Warn("release staged chunks", "err", err)
	}
}

// Close writes the last partial chunk, waits for every chunk, and commits
// them with the metadata synced. It returns the bytes written.
func (w *Writer) Close() (int64, error) {
	if w.buf != nil && len(w.buf) > 0 {
		w.dispatch()
	}
	w.wg.Wait()
	if err := w.failed(); err != nil {
		w.Abort()
		return w.size, err
	}
	if err := w.commit(); err != nil {
		return w.size, err
	}
	if err := w.m.meta.sync(); err != nil {
		return w.size, fmt.Errorf("write inode %d: %w", w.ino, err)
	}
	return w.size, nil
}

// Abort stops the writer and releases chunks staged but not committed.
// Chunks already committed belong to the file and go with it.
func (w *Writer) Abort() {
	w.wg.Wait()
	w.mu.Lock()
	done := w.done
	w.done = nil
	w.mu.Unlock()
	w.release(done)
}
