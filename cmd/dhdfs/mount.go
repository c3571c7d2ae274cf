package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/dhdfs/dhdfs/cluster"
	"github.com/dhdfs/dhdfs/cluster/control"
	"github.com/dhdfs/dhdfs/cluster/metrics"
	"github.com/dhdfs/dhdfs/fs"
	"github.com/dhdfs/dhdfs/nodes"
)

// readyFDEnv names the pipe a daemonised mount reports readiness on.
const readyFDEnv = "DHDFS_READY_FD"

func cmdMount() *cli.Command {
	def := cluster.DefaultOptions() // the flags' defaults
	return &cli.Command{
		Name:      "mount",
		Usage:     "mount the pool as a directory (FUSE)",
		ArgsUsage: "DIR",
		Description: `Runs in the foreground until the pool is unmounted (dhdfs umount DIR,
fusermount3 -u DIR, umount DIR, Ctrl-C or SIGTERM); with --daemon it returns
once the mount is ready and logs to HOME/mount.log. Unmounting flushes every
open file before the process exits. DIR must be an empty directory.

Options for -o (comma-separated, as in fstab): allow_other, debug,
read_ahead=SIZE; ro (read-only) and rw; relatime (the default: reads and
listings update a file's access time when it is older than its last
change, or a day old; kept at open, as reads served from the kernel's
cache never reach dhdfs), strictatime (at every open), noatime (never),
nodiratime (never for directories), atime and diratime (undo those);
/proc/mounts shows them (mounted without root: ro and noatime only). The
generic defaults, auto, noauto, user, nouser, _netdev, nofail and
x-systemd.* are accepted and ignored.

Examples:
   dhdfs mount /mnt/pool
   dhdfs mount --daemon -o allow_other /mnt/pool
   dhdfs mount -o ro,noatime /mnt/pool              # read-only, no access times
   dhdfs mount --read-ahead 0 /mnt/pool             # kernel default 128 KiB: mostly random reads
   mount -t fuse.dhdfs /var/lib/dhdfs /mnt/pool     # after dhdfs install-helper`,
		Flags: withCommon(
			&cli.BoolFlag{Name: "daemon", Aliases: []string{"d"}, Usage: "return once mounted; keep serving in the background"},
			&cli.BoolFlag{Name: "allow-other", Usage: "let other users use the mount (the kernel checks permissions)"},
			&cli.BoolFlag{Name: "debug", Usage: "log every FUSE request and reply to stderr"},
			&cli.StringFlag{Name: "o", Usage: "mount options, comma-separated (see above)"},
			&cli.StringFlag{Name: "log-file", Usage: "append logs here (default with --daemon: HOME/mount.log)"},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
			&cli.StringFlag{Name: "metrics", Usage: "serve Prometheus metrics on this address, e.g. 127.0.0.1:9477 (off by default)"},
			&cli.DurationFlag{Name: "probe-every", Value: def.ProbeInterval, Usage: "how often to check drives: failed ones come back when they work again"},
			&cli.StringFlag{Name: "cache-size", Value: sizeValue(def.CacheBytes), Usage: "memory for recently read chunks"},
			&cli.StringFlag{Name: "write-buffer", Value: sizeValue(def.WriteBufferBytes), Usage: "memory for written data not yet stored on the drives, for all files together"},
			&cli.StringFlag{Name: "read-ahead", Value: "1MiB", Usage: "how far the kernel reads ahead of sequential readers, also its read request size (as root; 0: the kernel's 128KiB)"},
			&cli.DurationFlag{Name: "heal-every", Value: def.HealInterval, Usage: "how often the background healer checks every chunk (also at once after a failure)"},
			&cli.DurationFlag{Name: "heal-after", Value: def.HealAfter, Usage: "how long a drive may be offline or failed before its chunks are copied elsewhere"},
			&cli.DurationFlag{Name: "scrub-every", Value: def.ScrubInterval, Usage: "how often to read and verify every copy (0: never)"},
			&cli.DurationFlag{Name: "sync-every", Value: def.SyncInterval, Usage: "how often committed writes are synced to disk; close commits, fsync syncs at once (0: every close syncs)"},
			&cli.DurationFlag{Name: "mirror-every", Value: def.MirrorInterval, Usage: "how often metadata changes are mirrored to every drive (dhdfs recover rebuilds home from one); 0: only at unmount"},
			&cli.StringFlag{Name: "debug-faults", Hidden: true, Usage: "inject drive faults for testing: DRIVE:FAULT[,FAULT...][;...]"},
			&cli.DurationFlag{Name: "drive-timeout", Value: def.DriveTimeout, Usage: "how long a drive may take to answer before it counts as failed"},
			&cli.DurationFlag{Name: "reclaim-every", Value: def.ReclaimInterval, Usage: "how often the background reclaimer checks each drive's dead space (drives short of space: every second); 0: off"},
			&cli.StringFlag{Name: "pprof", Usage: "serve Go profiling (net/http/pprof) on this address, e.g. 127.0.0.1:6060"},
			&cli.StringFlag{Name: "repair-rate", Value: sizeValue(def.RepairRate), Usage: "bytes per second background healing and scrubbing may use"},
		),
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, 1, "one mount point DIR"); err != nil {
				return err
			}
			cfg := fs.DefaultConfig()
			cfg.AllowOther, cfg.Debug = c.Bool("allow-other"), c.Bool("debug")
			if err := setReadAhead(&cfg, c.String("read-ahead")); err != nil {
				return usageError(c, "--read-ahead: %v", err)
			}
			if err := applyMountOptions(&cfg, c.String("o")); err != nil {
				return usageError(c, "%v", err)
			}
			dir, err := filepath.Abs(c.Args().First())
			if err != nil {
				return err
			}
			if _, err := mountOptions(c, cfg.ReadOnly); err != nil {
				return err
			}
			if home, err := filepath.Abs(c.String("home")); err == nil && (dir == home || strings.HasPrefix(dir, home+"/")) {
				return fmt.Errorf("mount point %s is inside the pool's home %s: mount it elsewhere", dir, home)
			}
			// Before anything opens HOME/mount.log: a mistyped home is
			// "no pool", not "open log file".
			if err := cluster.CheckPool(c.String("home")); err != nil {
				return err
			}
			if c.Bool("daemon") && os.Getenv(readyFDEnv) == "" {
				return daemonize(c, dir)
			}
			err = serve(c, dir, cfg)
			if err != nil {
				reportReady(err.Error()) // a no-op once the mount was ready
			}
			return err
		},
	}
}

// applyMountOptions reads fstab-style options into cfg.
func applyMountOptions(cfg *fs.Config, opts string) error {
	for _, o := range strings.Split(opts, ",") {
		switch {
		case o == "":
		case o == "allow_other":
			cfg.AllowOther = true
		case o == "debug":
			cfg.Debug = true
		case strings.HasPrefix(o, "read_ahead="):
			if err := setReadAhead(cfg, strings.TrimPrefix(o, "read_ahead=")); err != nil {
				return fmt.Errorf("read_ahead: %w", err)
			}
		case o == "ro":
			cfg.ReadOnly = true
		case o == "rw":
			cfg.ReadOnly = false
		case o == "relatime" || o == "atime":
			// atime is the opposite of noatime, which leaves relatime, as
			// mount(8) does.
			cfg.Atime = cluster.AtimeRelative
		case o == "strictatime":
			cfg.Atime = cluster.AtimeStrict
		case o == "noatime":
			cfg.Atime = cluster.AtimeNever
		case o == "nodiratime":
			cfg.NoDirAtime = true
		case o == "diratime":
			cfg.NoDirAtime = false
		case o == "defaults" || o == "auto" || o == "noauto" || o == "user" || o == "nouser" ||
			o == "users" || o == "_netdev" || o == "nofail" || o == "dev" || o == "nodev" || o == "suid" ||
			o == "nosuid" || o == "exec" || o == "noexec" ||
			strings.HasPrefix(o, "x-systemd.") || strings.HasPrefix(o, "comment="):
		default:
			return fmt.Errorf("unknown mount option %q", o)
		}
	}
	return nil
}

// setReadAhead parses a read-ahead size into cfg.
func setReadAhead(cfg *fs.Config, size string) error {
	n, err := parseSize(size)
	if err != nil {
		return err
	}
	if n > fs.MaxReadAhead {
		return fmt.Errorf("%s is more than the %d MiB allowed", size, fs.MaxReadAhead>>20)
	}
	cfg.ReadAhead = int(n)
	return nil
}

// minWriteBuffer is the least --write-buffer: a few chunks in flight for
// each writer.
const minWriteBuffer = 4 << 20

// mountOptions reads the pool's options from the flags. Bad values are
// usage errors, found before a daemon starts.
func mountOptions(c *cli.Context, readOnly bool) (cluster.Options, error) {
	opts := cluster.DefaultOptions()
	for _, f := range []struct {
		name string
		dst  *int64
	}{{"cache-size", &opts.CacheBytes}, {"repair-rate", &opts.RepairRate}, {"write-buffer", &opts.WriteBufferBytes}} {
		n, err := parseSize(c.String(f.name))
		if err != nil {
			return opts, usageError(c, "--%s %s: %v", f.name, c.String(f.name), err)
		}
		*f.dst = n
	}
	if opts.WriteBufferBytes < minWriteBuffer {
		return opts, usageError(c, "--write-buffer %s: at least %dMiB", c.String("write-buffer"), minWriteBuffer>>20)
	}
	if opts.CacheBytes == 0 {
		opts.CacheBytes = -1 // no cache
	}
	opts.ProbeInterval, opts.HealInterval, opts.HealAfter = c.Duration("probe-every"), c.Duration("heal-every"), c.Duration("heal-after")
	opts.ScrubInterval, opts.SyncInterval, opts.MirrorInterval = c.Duration("scrub-every"), c.Duration("sync-every"), c.Duration("mirror-every")
	opts.DriveTimeout, opts.ReclaimInterval = c.Duration("drive-timeout"), c.Duration("reclaim-every")
	opts.ReadOnly = readOnly
	if err := opts.Validate(); err != nil {
		return opts, usageError(c, "%s", strings.TrimSuffix(err.Error(), ": "+cluster.ErrInvalid.Error()))
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return opts, usageError(c, "--log-level %q: want debug, info, warn or error", c.String("log-level"))
	}
	return opts, nil
}

// serve mounts the pool at dir and serves it until it is unmounted.
func serve(c *cli.Context, dir string, cfg fs.Config) error {
	log, closeLog, err := mountLogger(c)
	if err != nil {
		return err
	}
	defer closeLog()
	opts, err := mountOptions(c, cfg.ReadOnly)
	if err != nil {
		return err
	}
	opts.Logger = log
	var met *metrics.Metrics
	if addr := c.String("metrics"); addr != "" {
		met = metrics.New()
		opts.WrapStore = func(rec cluster.DriveRecord, s nodes.Store) nodes.Store { return met.Store(rec.Name, s) }
		ln, err := met.Serve(addr)
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		defer ln.Close()
	}
	if addr := c.String("pprof"); addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("pprof: %w", err)
		}
		defer ln.Close()
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		go http.Serve(ln, mux)
	}
	if spec := c.String("debug-faults"); spec != "" {
		faults, err := parseFaults(spec)
		if err != nil {
			return err
		}
		injectFaults(&opts, faults)
		log.Warn("injecting drive faults", "spec", spec)
	}
	m, err := cluster.Open(c.String("home"), opts)
	if errors.Is(err, cluster.ErrPoolInUse) {
		return fmt.Errorf("cannot mount: %w (already mounted?)", err)
	}
	if err != nil {
		return err
	}
	met.WatchPool(m, 30*time.Second)
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(m.MemoryBudget())
	}
	cfg.Logger = log
	cfg.Metrics = met
	cfg.FsName = "dhdfs:" + c.String("home")
	// Signals are caught before the mount exists: one that arrives while
	// mounting waits in sigs and unmounts as soon as there is a mount,
	// instead of killing the process and leaving a stale mount behind.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	srv, err := mountCapturing(dir, m, cfg, log)
	if err != nil {
		m.Close()
		return err
	}
	ctl, err := control.Serve(m, log)
	if err != nil {
		srv.Unmount()
		m.Close()
		return err
	}
	log.Info("mounted", "dir", dir, "home", c.String("home"), "pid", os.Getpid())
	if err := reportReady(""); err != nil {
		log.Warn("report readiness", "err", err)
	}
	if err := sdNotify(fmt.Sprintf("READY=1\nMAINPID=%d\nSTATUS=serving %s at %s", os.Getpid(), c.String("home"), dir)); err != nil {
		log.Warn("report readiness", "err", err)
	}
	var stopping sync.Once
	stop := func() {
		stopping.Do(func() {
			if err := sdNotify("STOPPING=1\nSTATUS=unmounting, flushing open files"); err != nil {
				log.Warn("report stopping", "err", err)
			}
		})
	}
	if os.Getenv(readyFDEnv) == "" && isTerminal(os.Stderr) {
		fmt.Fprintf(os.Stderr, "Mounted the pool at %s. Stop with Ctrl-C or 'dhdfs umount %s'.\n", dir, dir)
	}

	m.Mounted(dir) // once dir is unmounted, a new mount waits for this process to finish
	go func() {
		for s := range sigs {
			log.Info("unmounting", "signal", s.String())
			stop()
			if err := srv.Unmount(); err != nil {
				// Files are open: detach now; the kernel finishes serving
				// them and the server returns when the last one closes.
				log.Warn("mount busy, detaching lazily", "err", err)
				if err := lazyUnmount(dir); err != nil {
					log.Error("unmount", "err", err)
				}
			}
		}
	}()
	srv.Wait()
	stop() // unmounted from outside (umount, fusermount3 -u)
	signal.Stop(sigs)
	close(sigs)
	if err := ctl.Close(); err != nil {
		log.Warn("close control socket", "err", err)
	}
	// The kernel has flushed and released every file by now; make sure the
	// buffers and the drives are synced before the pool closes.
	err = m.Close()
	log.Info("unmounted", "dir", dir, "err", err)
	return err
}

func lazyUnmount(dir string) error {
	if os.Geteuid() == 0 {
		return unix.Unmount(dir, unix.MNT_DETACH)
	}
	return exec.Command(fusermount(), "-u", "-z", dir).Run()
}

func fusermount() string {
	for _, name := range []string{"fusermount3", "fusermount"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return "fusermount3"
}

// mountLogger logs to --log-file, to HOME/mount.log for a daemon, else to
// stderr.
func mountLogger(c *cli.Context) (*slog.Logger, func(), error) {
	path := c.String("log-file")
	if path == "" && os.Getenv(readyFDEnv) != "" {
		path = filepath.Join(c.String("home"), "mount.log")
	}
	var w io.Writer = os.Stderr
	closer := func() {}
	if path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, nil, fmt.Errorf("open log file: %w", err)
		}
		w, closer = f, func() { f.Close() }
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return nil, nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", c.String("log-level"))
	}
	if c.Bool("verbose") {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})), closer, nil
}

// daemonize starts this command again in a new session and waits until the
// child reports that the mount is ready, or why it failed.
func daemonize(c *cli.Context, dir string) error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	// Every flag given passes to the daemon, whatever its kind: a list of
	// names here once forgot --read-ahead.
	args := []string{"mount", "--home=" + c.String("home")}
	for _, f := range c.Command.Flags {
		name := f.Names()[0]
		if name == "daemon" || name == "home" || name == "help" || !c.IsSet(name) {
			continue
		}
		switch v := c.Value(name).(type) {
		case bool:
			if v {
				args = append(args, "--"+name)
			}
		case time.Duration:
			args = append(args, "--"+name+"="+v.String())
		default:
			args = append(args, fmt.Sprintf("--%s=%v", name, v))
		}
	}
	args = append(args, "--", dir)
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), readyFDEnv+"=3")
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer devnull.Close()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, devnull
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("start mount daemon: %w", err)
	}
	w.Close()
	msg, _ := io.ReadAll(io.LimitReader(r, 4096))
	if s := strings.TrimSpace(string(msg)); s != "ok" {
		if s == "" {
			s = "the mount process exited before the mount was ready (see " + filepath.Join(c.String("home"), "mount.log") + ")"
		}
		return errors.New(s)
	}
	cmd.Process.Release()
	return nil
}

// mountCapturing mounts as fs.Mount does. A daemon's stderr is /dev/null,
// so there it keeps what fusermount3 says about a refused mount for the
// error the waiting parent prints, and for the log.
func mountCapturing(dir string, m *cluster.Manager, cfg fs.Config, log *slog.Logger) (*fuse.Server, error) {
	if os.Getenv(readyFDEnv) == "" {
		return fs.Mount(dir, fs.ManagerPool(m), cfg)
	}
	var srv *fuse.Server
	said, err := withStderrCaptured(func() (err error) {
		srv, err = fs.Mount(dir, fs.ManagerPool(m), cfg)
		return err
	})
	if said != "" {
		log.Warn("fusermount3 said", "output", said, "err", err)
		if err != nil {
			// Its words name the cause; go-fuse's say only that it failed.
			err = fmt.Errorf("mount %s: %s", dir, strings.Join(strings.Fields(said), " "))
		}
	}
	return srv, err
}

// withStderrCaptured runs f with file descriptor 2, which child processes
// inherit, pointing into a memory file, and returns what was written there.
func withStderrCaptured(f func() error) (string, error) {
	fd, err := unix.MemfdCreate("stderr", unix.MFD_CLOEXEC)
	if err != nil {
		return "", f()
	}
	mem := os.NewFile(uintptr(fd), "stderr")
	defer mem.Close()
	saved, err := unix.FcntlInt(2, unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		return "", f()
	}
	defer unix.Close(saved)
	if err := unix.Dup3(fd, 2, 0); err != nil {
		return "", f()
	}
	ferr := f()
	if err := unix.Dup3(saved, 2, 0); err != nil {
		ferr = errors.Join(ferr, fmt.Errorf("restore stderr: %w", err))
	}
	out, _ := io.ReadAll(io.NewSectionReader(mem, 0, 16<<10))
	return strings.TrimSpace(string(out)), ferr
}

// reportReady tells a waiting daemonize parent, once, that the mount is
// ready (msg empty) or why it failed. Later calls do nothing.
func reportReady(msg string) error {
	var err error
	readyOnce.Do(func() {
		if os.Getenv(readyFDEnv) == "" {
			return
		}
		f := os.NewFile(3, "ready")
		defer f.Close()
		if msg == "" {
			msg = "ok"
		}
		_, err = f.WriteString(msg + "\n")
	})
	return err
}

var readyOnce sync.Once

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
