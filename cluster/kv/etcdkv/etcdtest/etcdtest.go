// Package etcdtest starts a real etcd cluster inside a test process, its
// members listening on 127.0.0.1, so the etcd engine is tested against
// etcd itself rather than a fake.
package etcdtest

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// Cluster is a running etcd cluster.
type Cluster struct {
	Members   []*embed.Etcd
	Endpoints []string // host:port of each member's client URL
}

// freePort returns a port on 127.0.0.1 free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Start runs an n-member cluster until the test ends.
func Start(t *testing.T, n int) *Cluster {
	t.Helper()
	type member struct {
		name         string
		peer, client url.URL
	}
	var ms []member
	var initial []string
	for i := 0; i < n; i++ {
		m := member{name: fmt.Sprintf("m%d", i),
			peer:   url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", freePort(t))},
			client: url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", freePort(t))}}
		ms = append(ms, m)
		initial = append(initial, m.name+"="+m.peer.String())
	}
	c := &Cluster{}
	started := make(chan error, n)
	dir := t.TempDir()
	for _, m := range ms {
		cfg := embed.NewConfig()
		cfg.Name = m.name
		cfg.Dir = dir + "/" + m.name
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{m.peer}, []url.URL{m.peer}
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{m.client}, []url.URL{m.client}
		cfg.InitialCluster = strings.Join(initial, ",")
		cfg.InitialClusterToken = "dhdfs-test"
		cfg.LogLevel = "error"
		cfg.LogOutputs = []string{dir + "/" + m.name + ".log"}
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			t.Fatalf("start etcd member %s: %v", m.name, err)
		}
		c.Members = append(c.Members, e)
		c.Endpoints = append(c.Endpoints, m.client.Host)
		go func() {
			select {
			case <-e.Server.ReadyNotify():
				started <- nil
			case <-time.After(30 * time.Second):
				started <- fmt.Errorf("etcd member %s not ready after 30 s", cfg.Name)
			}
		}()
	}
	t.Cleanup(func() {
		for _, e := range c.Members {
			if e != nil {
				e.Close()
			}
		}
	})
	for i := 0; i < n; i++ {
		if err := <-started; err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// URL returns an etcd:// URL of the cluster with the given key prefix.
func (c *Cluster) URL(prefix string) string {
	return "etcd://" + strings.Join(c.Endpoints, ",") + prefix
}

// StopLeader stops the member that leads the cluster now and returns its
// index; the others elect a new leader.
func (c *Cluster) StopLeader(t *testing.T) int {
	t.Helper()
	for i, e := range c.Members {
		if e != nil && e.Server.Leader() == e.Server.MemberID() {
			e.Close()
			c.Members[i] = nil
			return i
		}
	}
	t.Fatal("no member leads the cluster")
	return -1
}
