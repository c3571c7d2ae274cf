package control

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/dhdfs/dhdfs/cluster"
)

// The protocol, one connection per call:
//
//	client → server  request line: {"method": M, "params": {...}}\n
//	                 for "put": data frames, then an empty frame
//	server → client  for "get": a response line (ok to start, or the
//	                 error), then data frames and an empty frame
//	                 response line: {"result": ..., "error": {...}}\n
//
// A frame is a 4-byte big-endian length and that many bytes. Lines and
// frames are bounded, so a malformed peer gets an error, never a huge
// allocation.
const (
	maxLine  = 1 << 20
	maxFrame = 1 << 20
)

type request struct {
	Method string          `json:"method"`
	Params json.RawMessage `json:"params,omitempty"`
}

type response struct {
	// Progress lines may come before the final response of a long call.
	Progress *cluster.Progress `json:"progress,omitempty"`
	Result   json.RawMessage   `json:"result,omitempty"`
	Error    *wireError        `json:"error,omitempty"`
}

type wireError struct {
	Message string `json:"message"`
	Kind    string `json:"kind,omitempty"`
}

// kinds names the sentinel errors that survive the trip, so that callers
// can still use errors.Is on what a Client returns.
var kinds = map[string]error{
	"no_pool":       cluster.ErrNoPool,
	"pool_in_use":   cluster.ErrPoolInUse,
	"not_found":     cluster.ErrNotFound,
	"exist":         cluster.ErrExist,
	"not_dir":       cluster.ErrNotDir,
	"is_dir":        cluster.ErrIsDir,
	"not_empty":     cluster.ErrNotEmpty,
	"invalid":       cluster.ErrInvalid,
	"name_too_long": cluster.ErrNameTooLong,
	"no_drives":     cluster.ErrNoDrives,
	"no_space":      cluster.ErrNoSpace,
	"unknown_drive": cluster.ErrUnknownDrive,
	"bad_drive":     cluster.ErrBadDrive,
	"unavailable":   cluster.ErrUnavailable,
	"closed":        cluster.ErrClosed,
	"read_only":     cluster.ErrReadOnly,
	"no_attr":       cluster.ErrNoAttr,
	"not_supported": cluster.ErrNotSupported,
	"meta_damaged":  cluster.ErrMetaDamaged,
}

func toWire(err error) *wireError {
	if err == nil {
		return nil
	}
	w := &wireError{Message: err.Error()}
	for k, s := range kinds {
		if errors.Is(err, s) {
			w.Kind = k
			break
		}
	}
	return w
}

// remoteError is an error from the server: its message, unchanged, and the
// sentinel it wrapped, if any.
type remoteError struct {
	msg  string
	kind error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.kind }

func fromWire(w *wireError) error {
	if w == nil {
		return nil
	}
	return &remoteError{msg: w.Message, kind: kinds[w.Kind]}
}

func writeLine(w *bufio.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := w.Write(append(b, '\n')); err != nil {
		return err
	}
	return w.Flush()
}

// readLine reads one JSON line into v.
func readLine(r *bufio.Reader, v any) error {
	var line []byte
	for {
		part, isPrefix, err := r.ReadLine()
		if err != nil {
			return err
		}
		line = append(line, part...)
		if len(line) > maxLine {
			return fmt.Errorf("control message longer than %d bytes", maxLine)
		}
		if !isPrefix {
			break
		}
	}
	if err := json.Unmarshal(line, v); err != nil {
		return fmt.Errorf("malformed control message: %w", err)
	}
	return nil
}

// frameWriter sends what is written to it as frames; Close sends the end.
type frameWriter struct{ w *bufio.Writer }

func (f frameWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		c := min(len(p), maxFrame)
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], uint32(c))
		if _, err := f.w.Write(hdr[:]); err != nil {
			return n, err
		}
		if _, err := f.w.Write(p[:c]); err != nil {
			return n, err
		}
		p, n = p[c:], n+c
	}
	return n, nil
}

func (f frameWriter) Close() error {
	if _, err := f.w.Write([]byte{0, 0, 0, 0}); err != nil {
		return err
	}
	return f.w.Flush()
}

// frameReader reads frames until the empty one, then returns io.EOF.
type frameReader struct {
	r    *bufio.Reader
	left uint32
	done bool
}

func (f *frameReader) Read(p []byte) (int, error) {
	if f.done {
		return 0, io.EOF
	}
	if f.left == 0 {
		var hdr [4]byte
		if _, err := io.ReadFull(f.r, hdr[:]); err != nil {
			return 0, fmt.Errorf("control stream cut short: %w", io.ErrUnexpectedEOF)
		}
		f.left = binary.BigEndian.Uint32(hdr[:])
		if f.left == 0 {
			f.done = true
			return 0, io.EOF
		}
		if f.left > maxFrame {
			return 0, fmt.Errorf("control frame of %d bytes exceeds %d", f.left, maxFrame)
		}
	}
	n, err := f.r.Read(p[:min(len(p), int(f.left))])
	f.left -= uint32(n)
	if err == io.EOF {
		err = fmt.Errorf("control stream cut short: %w", io.ErrUnexpectedEOF)
	}
	return n, err
}
