package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/dhdfs/dhdfs/cluster"
)

// Client is the API of a pool served by a running mount.
type Client struct {
	path     string
	progress cluster.ProgressFunc // of the call under way; a Client makes one call at a time
}

var _ API = (*Client)(nil)

// Dial connects to the mount serving the pool in home. It fails with an
// error wrapping errNoServer when no mount serves it.
func Dial(home string) (*Client, error) {
	c := &Client{path: SocketPath(home)}
	conn, err := c.dial()
	if err != nil {
		return nil, err
	}
	conn.Close()
	return c, nil
}

func (c *Client) dial() (net.Conn, error) {
	conn, err := net.DialTimeout("unix", c.path, 5*time.Second)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
		return nil, fmt.Errorf("%s: %w", c.path, errNoServer)
	}
	if err != nil {
		return nil, fmt.Errorf("connect to the mount: %w", err)
	}
	return conn, nil
}

// call sends one request and decodes the result into out (may be nil).
// body, if set, is streamed after the request (for put).
func (c *Client) call(method string, params any, body io.Reader, out any) error {
	return c.callProgress(context.Background(), method, params, body, out, nil)
}

// callProgress is call for long operations: progress lines go to progress,
// and cancelling ctx hangs up, which stops the operation in the mount.
func (c *Client) callProgress(ctx context.Context, method string, params any, body io.Reader, out any, progress cluster.ProgressFunc) error {
	conn, err := c.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	c.progress = progress
	r, w := bufio.NewReader(conn), bufio.NewWriter(conn)
	if err := c.send(w, method, params); err != nil {
		return err
	}
	if body != nil {
		fw := frameWriter{w: w}
		_, err := io.Copy(fw, body)
		if err == nil {
			err = fw.Close()
		}
		if err != nil {
			// The mount may have stopped reading because the call failed:
			// its answer says why better than a broken pipe.
			if rerr := c.receive(r, out); rerr != nil {
				return rerr
			}
			return fmt.Errorf("send to the mount: %w", err)
		}
	}
	return c.receive(r, out)
}

func (c *Client) send(w *bufio.Writer, method string, params any) error {
	p, err := json.Marshal(params)
	if err != nil {
		return err
	}
	if err := writeLine(w, request{Method: method, Params: p}); err != nil {
		return fmt.Errorf("send to the mount: %w", err)
	}
	return nil
}

func (c *Client) receive(r *bufio.Reader, out any) error {
	var resp response
	for {
		resp = response{}
		if err := readLine(r, &resp); err != nil {
			return fmt.Errorf("the mount did not answer: %w", err)
		}
		if resp.Progress == nil {
			break
		}
		if c.progress != nil {
			c.progress(*resp.Progress)
		}
	}
	if resp.Error != nil {
		return fromWire(resp.Error)
	}
	if out != nil && len(resp.Result) > 0 {
		if err := json.Unmarshal(resp.Result, out); err != nil {
			return fmt.Errorf("malformed answer from the mount: %w", err)
		}
	}
	return nil
}

// AddDrive implements API.
func (c *Client) AddDrive(path string, o cluster.AddDriveOptions) (cluster.DriveInfo, []string, error) {
	var res addResult
	err := c.call("drive.add", driveParams{Path: path, Name: o.Name, Labels: o.Labels, Reserve: o.Reserve}, nil, &res)
	return res.Drive, res.Warnings, err
}

// Drives implements API.
func (c *Client) Drives() ([]cluster.DriveInfo, error) {
	var res []cluster.DriveInfo
	return res, c.call("drive.list", nil, nil, &res)
}

// SetDriveOffline implements API.
func (c *Client) SetDriveOffline(name string, offline bool) (cluster.DriveInfo, error) {
	var res cluster.DriveInfo
	return res, c.call("drive.offline", driveParams{Name: name, Offline: offline}, nil, &res)
}

// SetDriveReserve implements API.
func (c *Client) SetDriveReserve(name string, reserve int64) (cluster.DriveInfo, error) {
	var res cluster.DriveInfo
	return res, c.call("drive.reserve", driveParams{Name: name, Reserve: reserve}, nil, &res)
}

// Status implements API.
func (c *Client) Status() (cluster.Status, error) {
	var res cluster.Status
	return res, c.call("status", nil, nil, &res)
}

// Resolve implements API.
func (c *Client) Resolve(p string) (cluster.Inode, error) {
	var res cluster.Inode
	return res, c.call("resolve", pathParams{Path: p}, nil, &res)
}

// List implements API.
func (c *Client) List(p string) ([]cluster.Entry, error) {
	var res []cluster.Entry
	return res, c.call("list", pathParams{Path: p}, nil, &res)
}

// StatPath implements API.
func (c *Client) StatPath(p string, chunks bool) (cluster.FileStat, error) {
	var res cluster.FileStat
	return res, c.call("stat", pathParams{Path: p, Chunks: chunks}, nil, &res)
}

// MkdirPath implements API. The files belong to the caller as the kernel
// reports it, whatever c says.
func (c *Client) MkdirPath(p string, parents bool, mode uint32, _ cluster.Caller) (cluster.Inode, error) {
	var res cluster.Inode
	return res, c.call("mkdir", pathParams{Path: p, Parents: parents, Mode: mode}, nil, &res)
}

// RemovePath implements API.
func (c *Client) RemovePath(p string, recursive bool) error {
	return c.call("remove", pathParams{Path: p, Recursive: recursive}, nil, nil)
}

// PutFile implements API.
func (c *Client) PutFile(ctx context.Context, p string, r io.Reader, mode uint32, _ cluster.Caller) (cluster.Inode, error) {
	var res cluster.Inode
	return res, c.call("put", pathParams{Path: p, Mode: mode}, r, &res)
}

// GetFile implements API.
func (c *Client) GetFile(ctx context.Context, p string, w io.Writer) (int64, error) {
	conn, err := c.dial()
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	r, bw := bufio.NewReader(conn), bufio.NewWriter(conn)
	if err := c.send(bw, "get", pathParams{Path: p}); err != nil {
		return 0, err
	}
	if err := c.receive(r, nil); err != nil {
		return 0, err
	}
	n, err := io.Copy(w, &frameReader{r: r})
	if err != nil {
		return n, err
	}
	var size int64
	return n, c.receive(r, &size)
}

// Close implements API; a Client holds no resources between calls.
func (c *Client) Close() error { return nil }

// Heal implements API.
func (c *Client) Heal(ctx context.Context, progress cluster.ProgressFunc) (cluster.HealReport, error) {
	var res cluster.HealReport
	return res, c.callProgress(ctx, "heal", nil, nil, &res, progress)
}

// Scrub implements API.
func (c *Client) Scrub(ctx context.Context, progress cluster.ProgressFunc) (cluster.ScrubReport, error) {
	var res cluster.ScrubReport
	return res, c.callProgress(ctx, "scrub", nil, nil, &res, progress)
}

// GC implements API.
func (c *Client) GC(ctx context.Context, progress cluster.ProgressFunc) (cluster.GCReport, error) {
	var res cluster.GCReport
	return res, c.callProgress(ctx, "gc", nil, nil, &res, progress)
}

// Rebalance implements API.
func (c *Client) Rebalance(ctx context.Context, threshold float64, progress cluster.ProgressFunc) (cluster.MoveReport, error) {
	var res cluster.MoveReport
	return res, c.callProgress(ctx, "rebalance", driveParams{Threshold: threshold}, nil, &res, progress)
}

// Drain implements API.
func (c *Client) Drain(ctx context.Context, name string, progress cluster.ProgressFunc) (cluster.MoveReport, error) {
	var res cluster.MoveReport
	return res, c.callProgress(ctx, "drive.drain", driveParams{Name: name}, nil, &res, progress)
}

// Replace implements API.
func (c *Client) Replace(ctx context.Context, old, newPath string, o cluster.AddDriveOptions, progress cluster.ProgressFunc) (cluster.MoveReport, error) {
	var res cluster.MoveReport
	return res, c.callProgress(ctx, "drive.replace", driveParams{Name: old, Path: newPath, NewName: o.Name, Labels: o.Labels, Reserve: o.Reserve}, nil, &res, progress)
}

// RemoveDrive implements API.
func (c *Client) RemoveDrive(name string, force bool) (cluster.RemoveReport, error) {
	var res cluster.RemoveReport
	return res, c.call("drive.remove", driveParams{Name: name, Force: force}, nil, &res)
}
