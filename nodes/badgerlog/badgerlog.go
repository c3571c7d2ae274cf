// Package badgerlog routes Badger's log lines to slog, quieting the ones
// Badger repeats.
package badgerlog

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// New routes Badger's log lines to l (nil discards them). Badger's
// info chatter (compactions, value-log replays) is demoted to debug.
func New(l *slog.Logger) badger.Logger {
	return badgerLogger{l: l, seen: &repeats{last: map[string]*repeat{}}}
}

type badgerLogger struct {
	l    *slog.Logger
	seen *repeats
}

// repeats quiets a warning or error Badger repeats: a store whose
// directory is gone retries its flush every second and logs each failure.
// The same message (by format) is logged once per repeatQuiet, with how
// many times it came meanwhile.
type repeats struct {
	mu   sync.Mutex
	last map[string]*repeat // guarded by mu, by format
}

type repeat struct {
	at    time.Time
	count int
}

const repeatQuiet = 5 * time.Minute

// allow reports whether a message of format may be logged now, and how
// many were held back since the last one.
func (r *repeats) allow(format string, now time.Time) (bool, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rp, ok := r.last[format]; ok && now.Sub(rp.at) < repeatQuiet {
		rp.count++
		return false, 0
	}
	held := 0
	if rp, ok := r.last[format]; ok {
		held = rp.count
	}
	if len(r.last) > 256 {
		clear(r.last)
	}
	r.last[format] = &repeat{at: now}
	return true, held
}

func (b badgerLogger) log(level slog.Level, format string, args ...any) {
	if b.l == nil || !b.l.Enabled(context.Background(), level) {
		return // skip the formatting: Badger logs a lot at debug level
	}
	msg := "badger: " + fmt.Sprintf(format, args...)
	if level >= slog.LevelWarn && b.seen != nil {
		ok, held := b.seen.allow(format, time.Now())
		if !ok {
			return
		}
		if held > 0 {
			msg += fmt.Sprintf(" (%d more since it was last logged)", held)
		}
	}
	b.l.Log(context.Background(), level, msg)
}

func (b badgerLogger) Errorf(f string, a ...any)   { b.log(slog.LevelError, f, a...) }
func (b badgerLogger) Warningf(f string, a ...any) { b.log(slog.LevelWarn, f, a...) }
func (b badgerLogger) Infof(f string, a ...any)    { b.log(slog.LevelDebug, f, a...) }
func (b badgerLogger) Debugf(f string, a ...any)   { b.log(slog.LevelDebug, f, a...) }
