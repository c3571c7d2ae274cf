// Package metrics exports a mounted pool's activity to Prometheus: per
// drive traffic, errors, latency and state; FUSE operations; chunk
// redundancy. A nil *Metrics is valid and records nothing, so callers need
// no checks when metrics are off.
package metrics

import (
	"net"
	"net/http"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dhdfs/dhdfs/cluster"
	"github.com/dhdfs/dhdfs/nodes"
)

// Metrics holds the pool's metrics.
type Metrics struct {
	reg          *prometheus.Registry
	driveBytes   *prometheus.CounterVec
	driveErrors  *prometheus.CounterVec
	driveSeconds *prometheus.HistogramVec
	fuseOps      *prometheus.CounterVec
	fuseSeconds  *prometheus.HistogramVec
}

// New creates the metrics in a registry of their own (with Go runtime and
// process metrics).
func New() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{
		reg: reg,
		driveBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dhdfs_drive_bytes_total", Help: "Chunk bytes read from and written to each drive.",
		}, []string{"drive", "direction"}),
		driveErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dhdfs_drive_errors_total", Help: "Failed drive operations (a missing chunk counts as an error).",
		}, []string{"drive", "op"}),
		driveSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "dhdfs_drive_op_seconds", Help: "Latency of drive operations.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 4, 10),
		}, []string{"drive", "op"}),
		fuseOps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dhdfs_fuse_ops_total", Help: "FUSE requests served, by operation and result (ok or the errno).",
		}, []string{"op", "result"}),
		fuseSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "dhdfs_fuse_op_seconds", Help: "Latency of FUSE requests.",
			Buckets: prometheus.ExponentialBuckets(10e-6, 4, 10),
		}, []string{"op"}),
	}
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "dhdfs_build_info", Help: "1, labelled with the running dhdfs's version and Go version.",
	}, []string{"version", "goversion"})
	build.WithLabelValues(cluster.BuildVersion(), runtime.Version()).Set(1)
	reg.MustRegister(m.driveBytes, m.driveErrors, m.driveSeconds, m.fuseOps, m.fuseSeconds, build)
	// Series that alerts and dashboards watch exist at zero before the
	// first event: a rate over a series that does not exist yet is no data,
	// not 0.
	for _, op := range []string{"read", "write", "fsync", "create", "flush"} {
		for _, res := range []string{"ok", "EIO", "ENOSPC"} {
			m.fuseOps.WithLabelValues(op, res)
		}
	}
	return m
}

// driveOps are the drive operations the metrics count.
var driveOps = []string{"put", "get", "delete", "sync"}

// Serve exposes /metrics on addr until the listener fails. It returns once
// listening, so that a wrong address is reported at once.
func (m *Metrics) Serve(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	go http.Serve(ln, mux)
	return ln, nil
}

// FUSE records one FUSE request that started at start.
func (m *Metrics) FUSE(op string, start time.Time, errno syscall.Errno) {
	if m == nil {
		return
	}
	result := "ok"
	if errno != 0 {
		result = errnoName(errno)
	}
	m.fuseOps.WithLabelValues(op, result).Inc()
	m.fuseSeconds.WithLabelValues(op).Observe(time.Since(start).Seconds())
}

func errnoName(e syscall.Errno) string {
	switch e {
	case syscall.ENOENT:
		return "ENOENT"
	case syscall.EEXIST:
		return "EEXIST"
	case syscall.EIO:
		return "EIO"
	case syscall.ENOSPC:
		return "ENOSPC"
	case syscall.ENODATA:
		return "ENODATA"
	case syscall.ENOTEMPTY:
		return "ENOTEMPTY"
	case syscall.EACCES, syscall.EPERM:
		return "EPERM"
	}
	return "other"
}

// WatchPool exports the drives' states and the chunk redundancy counts of
// m. The counts need a scan of the metadata, so they are recomputed at
// most every refresh.
func (m *Metrics) WatchPool(p *cluster.Manager, refresh time.Duration) {
	if m == nil {
		return
	}
	m.reg.MustRegister(&poolCollector{p: p, refresh: refresh})
}

var (
	stateDesc = prometheus.NewDesc("dhdfs_drive_state", "1 for the drive's current state (online, draining, offline, failed).", []string{"drive", "state"}, nil)
	usedDesc  = prometheus.NewDesc("dhdfs_drive_used_bytes", "Bytes the drive's store occupies.", []string{"drive"}, nil)
	freeDesc  = prometheus.NewDesc("dhdfs_drive_free_bytes", "Free bytes of the filesystem under the drive (dhdfs leaves 64 MiB of it free).", []string{"drive"}, nil)
	sizeDesc  = prometheus.NewDesc("dhdfs_drive_size_bytes", "Size of the filesystem under the drive.", []string{"drive"}, nil)
	availDesc = prometheus.NewDesc("dhdfs_pool_avail_bytes", "File data that still fits: what df shows as available.", nil, nil)
	underDesc = prometheus.NewDesc("dhdfs_chunks_under_replicated", "Chunks with fewer copies on online drives than wanted.", nil, nil)
	lostDesc  = prometheus.NewDesc("dhdfs_chunks_lost", "Chunks with no copy on an online drive.", nil, nil)
	chunkDesc = prometheus.NewDesc("dhdfs_chunks", "Distinct chunks stored.", nil, nil)
)

type poolCollector struct {
	p       *cluster.Manager
	refresh time.Duration

	mu     sync.Mutex
	last   cluster.Status      // guarded by mu
	drives []cluster.DriveInfo // guarded by mu
	at     time.Time           // guarded by mu
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{stateDesc, usedDesc, freeDesc, sizeDesc, availDesc, underDesc, lostDesc, chunkDesc} {
		ch <- d
	}
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	for name, state := range c.p.DriveStates() {
		for _, s := range []cluster.DriveState{cluster.StateOnline, cluster.StateDraining, cluster.StateOffline, cluster.StateFailed} {
			v := 0.0
			if s == state {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(stateDesc, prometheus.GaugeValue, v, name, string(s))
		}
	}
	c.mu.Lock()
	if time.Since(c.at) > c.refresh {
		if st, err := c.p.Status(); err == nil {
			c.last, c.at = st, time.Now()
		}
		if ds, err := c.p.Drives(); err == nil {
			c.drives = ds
		}
	}
	st, drives := c.last, c.drives
	c.mu.Unlock()
	for _, d := range drives {
		for desc, v := range map[*prometheus.Desc]int64{usedDesc: d.Used, freeDesc: d.Free, sizeDesc: d.Total} {
			if v >= 0 { // -1: unknown (the drive is not there)
				ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(v), d.Name)
			}
		}
	}
	ch <- prometheus.MustNewConstMetric(availDesc, prometheus.GaugeValue, float64(st.UsableFree))
	ch <- prometheus.MustNewConstMetric(underDesc, prometheus.GaugeValue, float64(st.UnderReplicated))
	ch <- prometheus.MustNewConstMetric(lostDesc, prometheus.GaugeValue, float64(st.Lost))
	ch <- prometheus.MustNewConstMetric(chunkDesc, prometheus.GaugeValue, float64(st.Chunks))
}

// Store wraps a drive's store so its traffic, errors and latency are
// recorded under the drive's name.
func (m *Metrics) Store(drive string, s nodes.Store) nodes.Store {
	if m == nil {
		return s
	}
	for _, op := range driveOps {
		m.driveErrors.WithLabelValues(drive, op)
	}
	for _, dir := range []string{"read", "write"} {
		m.driveBytes.WithLabelValues(drive, dir)
	}
	return &store{Store: s, m: m, drive: drive}
}

type store struct {
	nodes.Store
	m     *Metrics
	drive string
}

func (s *store) observe(op string, start time.Time, err error) {
	s.m.driveSeconds.WithLabelValues(s.drive, op).Observe(time.Since(start).Seconds())
	if err != nil {
		s.m.driveErrors.WithLabelValues(s.drive, op).Inc()
	}
}

func (s *store) Put(id nodes.ChunkID, data []byte) error {
	start := time.Now()
	err := s.Store.Put(id, data)
	s.observe("put", start, err)
	if err == nil {
		s.m.driveBytes.WithLabelValues(s.drive, "write").Add(float64(len(data)))
	}
	return err
}

func (s *store) Get(id nodes.ChunkID, buf []byte) ([]byte, error) {
	start := time.Now()
	b, err := s.Store.Get(id, buf)
	s.observe("get", start, err)
	if err == nil {
		s.m.driveBytes.WithLabelValues(s.drive, "read").Add(float64(len(b)))
	}
	return b, err
}

func (s *store) GetRange(id nodes.ChunkID, off, n int, buf []byte) ([]byte, error) {
	start := time.Now()
	b, err := s.Store.GetRange(id, off, n, buf)
	s.observe("get", start, err)
	if err == nil {
		s.m.driveBytes.WithLabelValues(s.drive, "read").Add(float64(len(b)))
	}
	return b, err
}

func (s *store) Sync() error {
	start := time.Now()
	err := s.Store.Sync()
	s.observe("sync", start, err)
	return err
}

func (s *store) Delete(id nodes.ChunkID) error {
	start := time.Now()
	err := s.Store.Delete(id)
	s.observe("delete", start, err)
	return err
}

// CollectGarbage passes through to the wrapped store.
func (s *store) CollectGarbage() error {
	if gc, ok := s.Store.(nodes.GarbageCollector); ok {
		return gc.CollectGarbage()
	}
	return nil
}
