package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"

	"github.com/dhdfs/dhdfs/cluster"
)

// progressReporter shows a long operation's progress: a bar on a terminal,
// a log line every few seconds otherwise.
type progressReporter struct {
	bar      *progressbar.ProgressBar
	last     time.Time
	lastDone int64
}

func newProgress() *progressReporter { return &progressReporter{} }

func (p *progressReporter) report(pr cluster.Progress) {
	if isTerminal(os.Stderr) {
		if p.bar == nil {
			p.bar = progressbar.NewOptions64(pr.Total,
				progressbar.OptionSetDescription(pr.Op),
				progressbar.OptionSetWriter(os.Stderr),
				progressbar.OptionShowCount(),
				progressbar.OptionSetPredictTime(true),
				progressbar.OptionClearOnFinish(),
				progressbar.OptionThrottle(100*time.Millisecond))
		}
		if pr.Total != p.bar.GetMax64() {
			p.bar.ChangeMax64(pr.Total)
		}
		p.bar.Set64(pr.Done)
		return
	}
	if time.Since(p.last) < 5*time.Second && pr.Done != pr.Total {
		return
	}
	if pr.Done == p.lastDone && !p.last.IsZero() {
		return
	}
	p.last, p.lastDone = time.Now(), pr.Done
	if pr.Bytes == 0 { // an operation that counts items, not bytes (fsck)
		fmt.Fprintf(os.Stderr, "%s: %d/%d done\n", pr.Op, pr.Done, pr.Total)
		return
	}
	fmt.Fprintf(os.Stderr, "%s: %d/%d done, %s processed\n", pr.Op, pr.Done, pr.Total, humanBytes(pr.Bytes))
}

func (p *progressReporter) finish() {
	if p.bar != nil {
		p.bar.Finish()
	}
}

// interruptible returns a context cancelled by Ctrl-C or SIGTERM, so long
// operations stop cleanly (and resume when run again).
func interruptible(c *cli.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
}

// copyProgress wraps large put/get streams in a byte-count bar on a
// terminal; elsewhere, and for small files, it returns them unchanged.
func copyProgress(op string, size int64) (wrapReader func(io.Reader) io.Reader, wrapWriter func(io.Writer) io.Writer, done func()) {
	const large = 64 << 20
	if !isTerminal(os.Stderr) || (size >= 0 && size < large) {
		return func(r io.Reader) io.Reader { return r }, func(w io.Writer) io.Writer { return w }, func() {}
	}
	bar := progressbar.NewOptions64(size, progressbar.OptionSetDescription(op), progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionShowBytes(true), progressbar.OptionClearOnFinish(), progressbar.OptionThrottle(100*time.Millisecond))
	return func(r io.Reader) io.Reader {
			rd := progressbar.NewReader(r, bar)
			return &rd
		}, func(w io.Writer) io.Writer { return io.MultiWriter(w, bar) },
		func() { bar.Finish() }
}
