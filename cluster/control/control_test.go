package control

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dhdfs/dhdfs/cluster"
)

func newServed(t *testing.T) (*cluster.Manager, *Client, string) {
	t.Helper()
	return newServedLog(t, nil)
}

// newServedLog is newServed with the server logging to log.
func newServedLog(t *testing.T, log *slog.Logger) (*cluster.Manager, *Client, string) {
	t.Helper()
	root := t.TempDir()
	home := filepath.Join(root, "home")
	if _, err := cluster.Init(home, cluster.DefaultPoolConfig()); err != nil {
		t.Fatal(err)
	}
	m, err := cluster.Open(home, cluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	for i := 1; i <= 2; i++ {
		p := filepath.Join(root, fmt.Sprint("disk", i))
		os.Mkdir(p, 0o755)
		if _, _, err := m.AddDrive(p, cluster.AddDriveOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := Serve(m, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	c, err := Dial(home)
	if err != nil {
		t.Fatal(err)
	}
	return m, c, root
}

// Every call gives the same answer through the socket as directly.
func TestClientMatchesManager(t *testing.T) {
	m, c, root := newServed(t)
	ctx := context.Background()
	data := bytes.Repeat([]byte("0123456789abcdef"), 200000) // 3.2 MB, several frames
	if _, err := c.MkdirPath("/d/e", true, 0o755, cluster.Caller{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutFile(ctx, "/d/f", bytes.NewReader(data), 0o600, cluster.Caller{}); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if n, err := c.GetFile(ctx, "/d/f", &got); err != nil || n != int64(len(data)) || !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("get through the socket: %d bytes, %v", n, err)
	}
	viaM, _ := m.List("/d")
	viaC, err := c.List("/d")
	if err != nil || fmt.Sprint(viaM) != fmt.Sprint(viaC) {
		t.Fatalf("List differs: %v vs %v (%v)", viaM, viaC, err)
	}
	sm, _ := m.StatPath("/d/f", true)
	sc, err := c.StatPath("/d/f", true)
	if err != nil || fmt.Sprint(sm) != fmt.Sprint(sc) {
		t.Fatalf("StatPath differs: %v vs %v (%v)", sm, sc, err)
	}
	dm, _ := m.Drives()
	dc, err := c.Drives()
	if err != nil || len(dm) != len(dc) || dm[0].Name != dc[0].Name || dm[0].Chunks != dc[0].Chunks {
		t.Fatalf("Drives differs: %v vs %v (%v)", dm, dc, err)
	}
	stm, _ := m.Status()
	stc, err := c.Status()
	if err != nil || stm.Files != stc.Files || stm.Chunks != stc.Chunks || stm.PoolID != stc.PoolID {
		t.Fatalf("Status differs: %+v vs %+v (%v)", stm, stc, err)
	}
	p := filepath.Join(root, "disk3")
	os.Mkdir(p, 0o755)
	info, _, err := c.AddDrive(p, cluster.AddDriveOptions{Name: "live", Labels: map[string]string{"a": "b"}})
	if err != nil || info.Name != "live" || info.Labels["a"] != "b" {
		t.Fatalf("AddDrive through the socket: %+v %v", info, err)
	}
	if info, err := c.SetDriveOffline("live", true); err != nil || info.State != cluster.StateOffline {
		t.Fatalf("offline through the socket: %+v %v", info, err)
	}
	if err := c.RemovePath("/d", true); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Resolve("/d"); !errors.Is(err, cluster.ErrNotFound) {
		t.Fatalf("after remove: %v", err)
	}
}

// Errors keep their message and their sentinel across the socket.
func TestClientErrors(t *testing.T) {
	m, c, _ := newServed(t)
	tests := []struct {
		name string
		call func(api API) error
		want error
	}{
		{"missing file", func(a API) error { _, err := a.Resolve("/nope"); return err }, cluster.ErrNotFound},
		{"get missing", func(a API) error { _, err := a.GetFile(context.Background(), "/nope", &bytes.Buffer{}); return err }, cluster.ErrNotFound},
		{"unknown drive", func(a API) error { _, err := a.SetDriveOffline("zz", true); return err }, cluster.ErrUnknownDrive},
		{"bad drive", func(a API) error { _, _, err := a.AddDrive("/nonexistent", cluster.AddDriveOptions{}); return err }, cluster.ErrBadDrive},
		{"mkdir exists", func(a API) error { _, err := a.MkdirPath("/", false, 0o755, cluster.Caller{}); return err }, cluster.ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			direct, remote := tc.call(m), tc.call(c)
			if !errors.Is(remote, tc.want) || !errors.Is(direct, tc.want) {
				t.Fatalf("direct %v, remote %v; want both %v", direct, remote, tc.want)
			}
			if direct.Error() != remote.Error() {
				t.Fatalf("messages differ: %q vs %q", direct, remote)
			}
		})
	}
}

// Malformed requests get an error; the server keeps serving.
func TestServerRejectsGarbage(t *testing.T) {
	_, c, _ := newServed(t)
	for _, req := range []string{
		"not json\n",
		`{"method":"nope"}` + "\n",
		`{"method":"list","params":"wrong type"}` + "\n",
		strings.Repeat("x", maxLine+10) + "\n",
		`{"method":"put","params":{"path":"/x"}}` + "\n\xff\xff\xff\xff",
	} {
		conn, err := net.Dial("unix", c.path)
		if err != nil {
			t.Fatal(err)
		}
		conn.Write([]byte(req))
		line, _ := bufio.NewReader(conn).ReadString('\n')
		conn.Close()
		if strings.Contains(line, `"result"`) {
			t.Fatalf("request %.40q succeeded: %s", req, line)
		}
	}
	if _, err := c.Status(); err != nil {
		t.Fatalf("server stopped serving after bad requests: %v", err)
	}
	if _, err := c.Resolve("/x"); !errors.Is(err, cluster.ErrNotFound) {
		t.Fatalf("a put with a bad frame created a file: %v", err)
	}
}

func TestServeRefusesPublicHome(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	if _, err := cluster.Init(home, cluster.DefaultPoolConfig()); err != nil {
		t.Fatal(err)
	}
	m, err := cluster.Open(home, cluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	os.Chmod(home, 0o755)
	if _, err := Serve(m, nil); err == nil || !strings.Contains(err.Error(), "accessible to other users") {
		t.Fatalf("Serve on a world-readable home: %v", err)
	}
}

func TestOpenWithoutMount(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	if _, err := cluster.Init(home, cluster.DefaultPoolConfig()); err != nil {
		t.Fatal(err)
	}
	api, err := Open(home, cluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := api.(*cluster.Manager); !ok {
		t.Fatalf("with no mount, Open returned %T, want the pool itself", api)
	}
	api.Close()
}

func FuzzServer(f *testing.F) {
	f.Add([]byte(`{"method":"status"}` + "\n"))
	f.Add([]byte(`{"method":"put","params":{"path":"/f"}}` + "\n\x00\x00\x00\x02hi\x00\x00\x00\x00"))
	f.Add([]byte(`{"method":"get","params":{"path":"/f"}}` + "\n"))
	root := f.TempDir()
	home := filepath.Join(root, "home")
	if _, err := cluster.Init(home, cluster.DefaultPoolConfig()); err != nil {
		f.Fatal(err)
	}
	m, err := cluster.Open(home, cluster.Options{})
	if err != nil {
		f.Fatal(err)
	}
	defer m.Close()
	os.Mkdir(filepath.Join(root, "d"), 0o755)
	m.AddDrive(filepath.Join(root, "d"), cluster.AddDriveOptions{})
	srv, err := Serve(m, nil)
	if err != nil {
		f.Fatal(err)
	}
	defer srv.Close()
	f.Fuzz(func(t *testing.T, req []byte) {
		conn, err := net.Dial("unix", SocketPath(home))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.Write(req)
		conn.(*net.UnixConn).CloseWrite()
		bufio.NewReader(conn).ReadString('\n')
		if _, err := m.Status(); err != nil {
			t.Fatalf("pool broken after request %q: %v", req, err)
		}
	})
}

// syncBuffer is a bytes.Buffer safe for a logger and a test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A client that connects and hangs up (every command does, to find the
// mount) is not a warning in the mount's log.
func TestHangUpIsNotAWarning(t *testing.T) {
	var logs syncBuffer
	_, c, _ := newServedLog(t, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if _, err := Dial(filepath.Dir(c.path)); err != nil {
		t.Fatal(err)
	}
	for i := 0; !strings.Contains(logs.String(), "hung up"); i++ {
		if i == 200 {
			t.Fatalf("no hang-up logged: %s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := c.Status(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "level=WARN") {
		t.Fatalf("a hang-up logged a warning: %s", logs.String())
	}
}

// A connection that sends nothing, or stops sending in the middle of a
// put, is closed after idleTimeout; past maxConns connections are told so
// and closed, and the server goes on serving.
func TestControlConnectionLimits(t *testing.T) {
	old := idleTimeout.Load()
	idleTimeout.Store(int64(300 * time.Millisecond))
	defer idleTimeout.Store(old)
	_, c, _ := newServed(t)
	closedSoon := func(conn net.Conn, what string) {
		t.Helper()
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 4096)
		for {
			if _, err := conn.Read(buf); err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("%s: still open after 10 s", what)
				}
				return
			}
		}
	}
	quiet, err := net.Dial("unix", c.path)
	if err != nil {
		t.Fatal(err)
	}
	defer quiet.Close()
	closedSoon(quiet, "a connection that sends nothing")
	half, err := net.Dial("unix", c.path)
	if err != nil {
		t.Fatal(err)
	}
	defer half.Close()
	half.Write([]byte(`{"method":"sta`))
	closedSoon(half, "a connection that sends half a request")
	// A put's body may pause longer than that, as a slow pipe does.
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := c.PutFile(context.Background(), "/slow", pr, 0o644, cluster.Caller{})
		done <- err
	}()
	pw.Write([]byte("first "))
	time.Sleep(3 * idle())
	pw.Write([]byte("second"))
	pw.Close()
	if err := <-done; err != nil {
		t.Fatalf("a put whose source paused: %v", err)
	}
	var got bytes.Buffer
	if _, err := c.GetFile(context.Background(), "/slow", &got); err != nil || got.String() != "first second" {
		t.Fatalf("/slow: %q, %v", got.String(), err)
	}

	idleTimeout.Store(int64(time.Minute))
	var held []net.Conn
	defer func() {
		for _, h := range held {
			h.Close()
		}
	}()
	dial := func() net.Conn {
		t.Helper()
		h, err := net.Dial("unix", c.path)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	for range maxConns {
		held = append(held, dial())
	}
	// The connections of the calls above may still have held their slots
	// for a moment, and the server then refused some of these (a refusal
	// is written at once): replace those, until all are served.
	for i, retries := 0, 0; i < len(held); i++ {
		held[i].SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := held[i].Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
			if retries++; retries > 100 {
				t.Fatalf("connection %d of %d refused again and again: %v", i+1, maxConns, err)
			}
			held[i].Close()
			time.Sleep(10 * time.Millisecond)
			held[i] = dial()
			i--
			continue
		}
		held[i].SetReadDeadline(time.Time{})
	}
	extra, err := net.Dial("unix", c.path)
	if err != nil {
		t.Fatal(err)
	}
	extra.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, _ := bufio.NewReader(extra).ReadString('\n')
	extra.Close()
	if !strings.Contains(line, "control connections") {
		t.Fatalf("connection %d got %q, want a refusal", maxConns+1, line)
	}
	held[0].Close()
	held = held[1:]
	for i := 0; ; i++ {
		if _, err := c.Status(); err == nil {
			break
		} else if i == 100 {
			t.Fatalf("no call served after a connection closed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
