package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dhdfs/dhdfs/cluster"
)

// Server serves the API of an open pool on its control socket.
type Server struct {
	m     *cluster.Manager
	log   *slog.Logger
	ln    *net.UnixListener
	path  string
	wg    sync.WaitGroup
	ctx   context.Context
	stop  context.CancelFunc
	conns chan struct{} // one token per connection being served
}

// Limits of the control socket. Only the pool's owner can connect (the
// socket is 0600), but a stuck or runaway client must not hold the mount's
// goroutines and descriptors without end: at most maxConns connections
// are served at once (more are told so and closed), a connection must
// send its request within idleTimeout, and every reply must be taken
// within it. What comes after the request is not timed: the body of a put
// pauses as long as its source does, and long calls (heal, scrub, gc,
// drain...) run for hours; a client that goes away ends them.
const maxConns = 64

// idleTimeout is 30 s; tests shorten it.
var idleTimeout = func() *atomic.Int64 {
	var d atomic.Int64
	d.Store(int64(30 * time.Second))
	return &d
}()

func idle() time.Duration { return time.Duration(idleTimeout.Load()) }

// Serve starts serving m on the control socket in m's home. The socket is
// private to the pool's owner; a leftover socket from a killed mount is
// replaced (the caller holds the pool lock, so no one else serves it).
func Serve(m *cluster.Manager, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	home := m.Home()
	if err := checkOwner(home); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	path := SocketPath(home)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	old := unix.Umask(0o077)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	s := &Server{m: m, log: log, ln: ln, path: path, ctx: ctx, stop: stop, conns: make(chan struct{}, maxConns)}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Close stops accepting, waits for calls in progress and removes the socket.
func (s *Server) Close() error {
	s.ln.SetUnlinkOnClose(true)
	err := s.ln.Close()
	s.stop()
	s.wg.Wait()
	return err
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.AcceptUnix()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Error("control socket accept", "err", err)
			}
			return
		}
		select {
		case s.conns <- struct{}{}:
		default:
			s.refuse(conn)
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-s.conns }()
			defer conn.Close()
			err := s.handle(conn)
			switch {
			case err == nil:
			case hungUp(err):
				// Clients hang up: 'dhdfs' checks whether a mount is
				// there by connecting, and Ctrl-C ends a call.
				s.log.Debug("control client hung up", "err", err)
			default:
				s.log.Warn("control call failed", "err", err)
			}
		}()
	}
}

// refuse answers a connection past maxConns with an error and closes it.
func (s *Server) refuse(conn *net.UnixConn) {
	s.log.Warn("control socket: too many connections", "limit", maxConns)
	conn.SetWriteDeadline(time.Now().Add(time.Second))
	w := bufio.NewWriter(conn)
	writeLine(w, response{Error: toWire(fmt.Errorf("the mount already serves %d control connections: %w", maxConns, cluster.ErrUnavailable))})
	conn.Close()
}

// hungUp reports whether err is the client going away, or going quiet
// past idleTimeout, rather than a failure of the call.
func hungUp(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.Is(err, unix.EPIPE) || errors.Is(err, unix.ECONNRESET) || errors.Is(err, net.ErrClosed)
}

// idleConn is a connection whose every read and write must make progress
// within idleTimeout; reads stop being timed once untimed is set.
type idleConn struct {
	*net.UnixConn
	untimed bool
}

func (c *idleConn) Read(p []byte) (int, error) {
	if !c.untimed {
		c.SetReadDeadline(time.Now().Add(idle()))
	}
	return c.UnixConn.Read(p)
}

func (c *idleConn) Write(p []byte) (int, error) {
	c.SetWriteDeadline(time.Now().Add(idle()))
	return c.UnixConn.Write(p)
}

// untimeReads stops timing reads, for a long call whose client sends
// nothing until it hangs up.
func (c *idleConn) untimeReads() {
	c.untimed = true
	c.SetReadDeadline(time.Time{})
}

// peer returns the uid and gid of the connected process, from the kernel:
// files a command creates belong to whoever ran it.
func peer(conn *net.UnixConn) (cluster.Caller, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return cluster.Caller{}, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return cluster.Caller{}, err
	}
	if cerr != nil {
		return cluster.Caller{}, cerr
	}
	return cluster.Caller{Uid: cred.Uid, Gid: cred.Gid}, nil
}

// Params of the calls.
type (
	pathParams struct {
		Path      string `json:"path"`
		Chunks    bool   `json:"chunks,omitempty"`
		Parents   bool   `json:"parents,omitempty"`
		Recursive bool   `json:"recursive,omitempty"`
		Mode      uint32 `json:"mode,omitempty"`
	}
	driveParams struct {
		Path      string            `json:"path,omitempty"`
		Name      string            `json:"name,omitempty"`
		NewName   string            `json:"new_name,omitempty"`
		Labels    map[string]string `json:"labels,omitempty"`
		Offline   bool              `json:"offline,omitempty"`
		Force     bool              `json:"force,omitempty"`
		Threshold float64           `json:"threshold,omitempty"`
		Reserve   int64             `json:"reserve,omitempty"`
	}
	addResult struct {
		Drive    cluster.DriveInfo `json:"drive"`
		Warnings []string          `json:"warnings"`
	}
)

func (s *Server) handle(conn *net.UnixConn) error {
	ic := &idleConn{UnixConn: conn}
	r, w := bufio.NewReader(ic), bufio.NewWriter(ic)
	var req request
	if err := readLine(r, &req); err != nil {
		return err
	}
	caller, err := peer(conn)
	if err != nil {
		return err
	}
	var pp pathParams
	var dp driveParams
	if len(req.Params) > 0 {
		target := any(&pp)
		if len(req.Method) > 6 && req.Method[:6] == "drive." || req.Method == "rebalance" {
			target = &dp
		}
		if err := json.Unmarshal(req.Params, target); err != nil {
			return writeLine(w, response{Error: toWire(fmt.Errorf("malformed params: %w", cluster.ErrInvalid))})
		}
	}
	var result any
	switch req.Method {
	case "drive.add":
		info, warnings, err2 := s.m.AddDrive(dp.Path, cluster.AddDriveOptions{Name: dp.Name, Labels: dp.Labels, Reserve: dp.Reserve})
		result, err = addResult{info, warnings}, err2
	case "drive.list":
		result, err = s.m.Drives()
	case "drive.offline":
		result, err = s.m.SetDriveOffline(dp.Name, dp.Offline)
	case "drive.reserve":
		result, err = s.m.SetDriveReserve(dp.Name, dp.Reserve)
	case "status":
		result, err = s.m.Status()
	case "resolve":
		result, err = s.m.Resolve(pp.Path)
	case "list":
		result, err = s.m.List(pp.Path)
	case "stat":
		result, err = s.m.StatPath(pp.Path, pp.Chunks)
	case "mkdir":
		result, err = s.m.MkdirPath(pp.Path, pp.Parents, pp.Mode, caller)
	case "remove":
		err = s.m.RemovePath(pp.Path, pp.Recursive)
	case "put":
		// The body may pause as long as its source does ('pg_dump |
		// dhdfs put - /db.sql'): a client that goes away ends it.
		ic.untimeReads()
		body := &frameReader{r: r}
		result, err = s.m.PutFile(s.ctx, pp.Path, body, pp.Mode, caller)
		if err != nil && !body.done {
			// The client is still sending: answer anyway; it stops on
			// the reply or the closed connection.
			s.log.Debug("put failed mid-stream", "path", pp.Path, "err", err)
		}
	case "get":
		return s.get(r, w, pp.Path)
	case "heal", "scrub", "gc", "rebalance", "drive.drain", "drive.replace":
		ic.untimeReads()
		ctx, progress := s.longCall(r, w)
		switch req.Method {
		case "heal":
			result, err = s.m.Heal(ctx, progress)
		case "scrub":
			result, err = s.m.Scrub(ctx, progress)
		case "gc":
			result, err = s.m.GC(ctx, progress)
		case "rebalance":
			result, err = s.m.Rebalance(ctx, dp.Threshold, progress)
		case "drive.drain":
			result, err = s.m.Drain(ctx, dp.Name, progress)
		case "drive.replace":
			result, err = s.m.Replace(ctx, dp.Name, dp.Path, cluster.AddDriveOptions{Name: dp.NewName, Labels: dp.Labels, Reserve: dp.Reserve}, progress)
		}
	case "drive.remove":
		result, err = s.m.RemoveDrive(dp.Name, dp.Force)
	default:
		err = fmt.Errorf("unknown control method %q: %w", req.Method, cluster.ErrInvalid)
	}
	resp := response{Error: toWire(err)}
	if err == nil && result != nil {
		if resp.Result, err = json.Marshal(result); err != nil {
			resp = response{Error: toWire(err)}
		}
	}
	return writeLine(w, resp)
}

// longCall returns the context and progress reporter of a long call: the
// context ends when the client goes away (Ctrl-C), and progress goes to
// the client at most every 200ms.
func (s *Server) longCall(r *bufio.Reader, w *bufio.Writer) (context.Context, cluster.ProgressFunc) {
	ctx, cancel := context.WithCancel(s.ctx)
	go func() {
		defer cancel()
		r.ReadByte() // returns when the client hangs up
	}()
	var last time.Time
	return ctx, func(p cluster.Progress) {
		if time.Since(last) < 200*time.Millisecond && p.Done != p.Total {
			return
		}
		last = time.Now()
		writeLine(w, response{Progress: &p})
	}
}

// get streams a file: a first line says whether it starts, frames carry
// the bytes, a last line says how it ended.
func (s *Server) get(r *bufio.Reader, w *bufio.Writer, p string) error {
	n, err := s.m.Resolve(p)
	if err == nil && !n.IsRegular() {
		err = fmt.Errorf("%s: not a regular file: %w", p, cluster.ErrIsDir)
	}
	if err != nil {
		return writeLine(w, response{Error: toWire(err)})
	}
	if err := writeLine(w, response{}); err != nil {
		return err
	}
	fw := frameWriter{w: w}
	size, err := s.m.GetFile(s.ctx, p, fw)
	if cerr := fw.Close(); err == nil {
		err = cerr
	}
	res, _ := json.Marshal(size)
	return writeLine(w, response{Result: res, Error: toWire(err)})
}
