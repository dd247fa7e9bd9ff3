package testserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Redis starts a standalone redis-server on 127.0.0.1:<free port> with
// persistence off. Its URL is redis://127.0.0.1:<port>.
func Redis(t testing.TB) *Server {
	t.Helper()
	bin := lookBin(t, "redis-server")
	return launch(t, func(ports []int) *Server {
		dir := t.TempDir()
		addr := hostPort(ports[0])
		return &Server{
			Addr:  addr,
			URL:   "redis://" + addr,
			bin:   bin,
			args:  redisArgs(ports[0], dir),
			dir:   dir,
			log:   filepath.Join(dir, "redis.log"),
			ready: func(ctx context.Context) error { return redisPing(ctx, addr) },
		}
	}, 1)
}

func redisArgs(port int, dir string) []string {
	return []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--protected-mode", "no",
		"--daemonize", "no",
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
		"--logfile", "",
	}
}

// Cluster is a Redis Cluster of three masters without replicas. URL is
// redis-cluster://a,b,c. Nodes gives each node for single-node outages.
type Cluster struct {
	Addrs []string
	URL   string
	Nodes []*Server

	t testing.TB
}

const clusterSize = 3

// RedisCluster starts three cluster-enabled redis-server processes, joins
// them with `redis-cli --cluster create ... --cluster-yes` and returns once
// every node reports cluster_state:ok.
func RedisCluster(t testing.TB) *Cluster {
	t.Helper()
	bin := lookBin(t, "redis-server")
	cli := lookBin(t, "redis-cli")
	c := &Cluster{t: t}
	for range clusterSize {
		// Two ports each: clients, and the cluster bus, set explicitly
		// because the default (port+10000) is not known to be free.
		n := launch(t, func(ports []int) *Server {
			dir := t.TempDir()
			addr := hostPort(ports[0])
			args := append(redisArgs(ports[0], dir),
				"--cluster-enabled", "yes",
				"--cluster-config-file", "nodes.conf",
				"--cluster-port", strconv.Itoa(ports[1]),
				"--cluster-node-timeout", "2000",
			)
			return &Server{
				Addr:  addr,
				URL:   "redis://" + addr,
				bin:   bin,
				args:  args,
				dir:   dir,
				log:   filepath.Join(dir, "redis.log"),
				ready: func(ctx context.Context) error { return redisPing(ctx, addr) },
			}
		}, 2)
		c.Nodes = append(c.Nodes, n)
		c.Addrs = append(c.Addrs, n.Addr)
	}
	c.URL = "redis-cluster://" + strings.Join(c.Addrs, ",")

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("testserver: redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	c.waitOK()
	return c
}

// Stop stops every node.
func (c *Cluster) Stop() {
	for _, n := range c.Nodes {
		n.Stop()
	}
}

// Start restarts every stopped node on its ports, with its saved cluster
// configuration, and returns once the cluster is ok again on every node.
func (c *Cluster) Start() {
	c.t.Helper()
	for _, n := range c.Nodes {
		n.Start()
	}
	c.waitOK()
}

// waitOK polls CLUSTER INFO on every node until each sees all slots served
// and every node known.
func (c *Cluster) waitOK() {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	want := "cluster_known_nodes:" + strconv.Itoa(len(c.Nodes))
	var last string
	for {
		ok := true
		for _, n := range c.Nodes {
			info, err := redisDo(ctx, n.Addr, "CLUSTER", "INFO")
			if err != nil {
				last = n.Addr + ": " + err.Error()
				ok = false
				break
			}
			if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, want) {
				last = n.Addr + ": " + info
				ok = false
				break
			}
		}
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			c.t.Fatalf("testserver: redis cluster not ok after %v; last answer %s", startTimeout, last)
		case <-time.After(pollEvery):
		}
	}
}

func redisPing(ctx context.Context, addr string) error {
	s, err := redisDo(ctx, addr, "PING")
	if err != nil {
		return err
	}
	if s != "PONG" {
		return fmt.Errorf("testserver: PING answered %q", s)
	}
	return nil
}

// redisDo sends one command on a fresh connection and reads a simple,
// integer, error or bulk-string reply: enough to tell readiness, without
// bringing a client library into every test binary.
func redisDo(ctx context.Context, addr string, args ...string) (string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	deadline := time.Now().Add(2 * time.Second)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	conn.SetDeadline(deadline)

	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(conn, b.String()); err != nil {
		return "", err
	}
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", errors.New("testserver: empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", errors.New("testserver: redis: " + line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("testserver: bad bulk reply %q", line)
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	default:
		return "", fmt.Errorf("testserver: unexpected reply %q", line)
	}
}

// RedisDo sends one command to the Redis at addr on a fresh connection
// and returns a simple, integer or bulk-string reply: for a test that
// must act on the server behind a node's back (FLUSHALL, CONFIG SET).
func RedisDo(ctx context.Context, addr string, args ...string) (string, error) {
	return redisDo(ctx, addr, args...)
}
