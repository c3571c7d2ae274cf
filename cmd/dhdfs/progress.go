package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"

	"github.com/dhdfs/dhdfs/cluster"
)

// progressReporter shows a long operation's progress: a bar on a terminal,
// a line every few seconds otherwise, each with its unit, the data moved
// and its rate, and a closing line with the totals.
type progressReporter struct {
	bar      *progressbar.ProgressBar
	start    time.Time
	last     time.Time
	lastDone int64
	final    cluster.Progress // the last report
	printed  bool             // a line went out (off a terminal)
}

func newProgress() *progressReporter { return &progressReporter{start: time.Now()} }

func (p *progressReporter) report(pr cluster.Progress) {
	p.final = pr
	if isTerminal(os.Stderr) {
		if p.bar == nil {
			opts := []progressbar.Option{
				progressbar.OptionSetDescription(pr.Op),
				progressbar.OptionSetWriter(os.Stderr),
				progressbar.OptionSetPredictTime(true),
				progressbar.OptionClearOnFinish(),
				progressbar.OptionThrottle(100 * time.Millisecond),
			}
			if pr.Unit == cluster.UnitBytes {
				opts = append(opts, progressbar.OptionShowBytes(true), progressbar.OptionUseIECUnits(true))
			} else {
				opts = append(opts, progressbar.OptionShowCount(), progressbar.OptionShowIts(),
					progressbar.OptionSetItsString(strings.TrimSuffix(cmp.Or(pr.Unit, "items"), "s")))
			}
			p.bar = progressbar.NewOptions64(pr.Total, opts...)
		}
		if pr.Total != p.bar.GetMax64() {
			p.bar.ChangeMax64(pr.Total)
		}
		p.bar.Set64(pr.Done)
		return
	}
	if pr.Total == 0 || time.Since(p.last) < 5*time.Second && pr.Done != pr.Total {
		return // nothing to do (the closing line says so), or too soon
	}
	if pr.Done == p.lastDone && !p.last.IsZero() {
		return
	}
	p.last, p.lastDone, p.printed = time.Now(), pr.Done, true
	fmt.Fprintf(os.Stderr, "%s: %s\n", pr.Op, progressLine(pr, time.Since(p.start)))
}

// progressLine says how far an operation is: "12 of 40 chunks, 3.0 MiB
// copied (1.5 MiB/s)".
func progressLine(pr cluster.Progress, took time.Duration) string {
	var line string
	if pr.Unit == cluster.UnitBytes {
		line = fmt.Sprintf("%s of %s", humanBytes(pr.Done), humanBytes(pr.Total))
	} else {
		line = fmt.Sprintf("%d of %d %s", pr.Done, pr.Total, cmp.Or(pr.Unit, "items"))
	}
	if pr.Bytes > 0 {
		if pr.Unit != cluster.UnitBytes {
			line += ", " + humanBytes(pr.Bytes)
		}
		if s := took.Seconds(); s > 0 {
			line += fmt.Sprintf(" (%.1f MiB/s)", float64(pr.Bytes)/(1<<20)/s)
		}
	}
	return line
}

// finish ends the bar, or off a terminal writes the closing line once
// progress lines went out.
func (p *progressReporter) finish() {
	if p.bar != nil {
		p.bar.Finish()
		return
	}
	if p.printed {
		took := time.Since(p.start)
		fmt.Fprintf(os.Stderr, "%s: finished, %s in %.1f s\n", p.final.Op, progressLine(p.final, took), took.Seconds())
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
		progressbar.OptionShowBytes(true), progressbar.OptionUseIECUnits(true), progressbar.OptionClearOnFinish(), progressbar.OptionThrottle(100*time.Millisecond))
	return func(r io.Reader) io.Reader {
			rd := progressbar.NewReader(r, bar)
			return &rd
		}, func(w io.Writer) io.Writer { return io.MultiWriter(w, bar) },
		func() { bar.Finish() }
}
