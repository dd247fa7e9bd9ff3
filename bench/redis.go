package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// redisProc is a redis-server the harness started for a hol run or a
// recover run on -backbone redis: on a free loopback port, persisting
// nothing, with a data directory of its own.
type redisProc struct {
	cmd    *exec.Cmd
	addr   string
	dir    string
	exited chan struct{}
}

// startRedis gives a hol (or recover on Redis) run its Redis: with a
// spawned node whose flags
// name no -broker, it starts RedisServer and adds -broker redis://ADDR to
// the node's flags; with a -broker redis://ADDR flag and no -redis, it
// samples that ADDR. Otherwise it samples -redis, or nothing.
func (r *runner) startRedis(ctx context.Context) error {
	defer func() { r.res.Params = r.p }()
	if r.p.Redis != "" {
		return nil
	}
	if b := flagValue(r.p.SpawnArgs, "broker"); b != "" {
		if a, ok := strings.CutPrefix(b, "redis://"); ok && checkTarget("ws://"+a) == nil {
			r.p.Redis = a
		}
		return nil
	}
	if r.p.Spawn == "" {
		return nil
	}
	rp, err := startRedisServer(ctx, r.p.RedisServer, r.cfg.NodeLog)
	if err != nil {
		return err
	}
	r.redis = rp
	r.p.Redis = rp.addr
	r.p.SpawnArgs = append(append([]string(nil), r.p.SpawnArgs...), "-broker", "redis://"+rp.addr)
	return nil
}

// startRedisServer starts bin on a free loopback port and waits until it
// answers PING.
func startRedisServer(ctx context.Context, bin string, logTo io.Writer) (*redisProc, error) {
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("%w: redis: %v", ErrNode, err)
	}
	dir, err := os.MkdirTemp("", "subsock-bench-redis")
	if err != nil {
		return nil, fmt.Errorf("%w: redis: %v", ErrNode, err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no")
	cmd.Stdout, cmd.Stderr = logTo, logTo
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("%w: redis: %v (scripts/install-deps.sh installs redis-server)", ErrNode, err)
	}
	rp := &redisProc{cmd: cmd, addr: addr, dir: dir, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(rp.exited)
	}()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		c, err := dialRedis(ctx, addr)
		if err == nil {
			pong, err := c.do("PING")
			c.close()
			if err == nil && pong == "PONG" {
				return rp, nil
			}
		}
		select {
		case <-rp.exited:
			rp.stop(0)
			return nil, fmt.Errorf("%w: redis-server exited at start", ErrNode)
		case <-ctx.Done():
			rp.stop(time.Second)
			return nil, fmt.Errorf("%w: redis-server did not answer PING", ErrNode)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM, kills after grace, and removes the data directory.
func (rp *redisProc) stop(grace time.Duration) {
	_ = rp.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-rp.exited:
	case <-time.After(grace):
		_ = rp.cmd.Process.Kill()
		<-rp.exited
	}
	_ = os.RemoveAll(rp.dir)
}

// redisConn is a minimal RESP2 client: one command at a time, replies as
// strings (simple, bulk and integer).
type redisConn struct {
	nc net.Conn
	br *bufio.Reader
}

func dialRedis(ctx context.Context, addr string) (*redisConn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &redisConn{nc: nc, br: bufio.NewReader(nc)}, nil
}

func (c *redisConn) close() { _ = c.nc.Close() }

var errRedisReply = errors.New("bench: redis")

func (c *redisConn) do(args ...string) (string, error) {
	var b []byte
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(len(args)), 10)
	b = append(b, "\r\n"...)
	for _, a := range args {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(a)), 10)
		b = append(b, "\r\n"...)
		b = append(b, a...)
		b = append(b, "\r\n"...)
	}
	if err := c.nc.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return "", err
	}
	if _, err := c.nc.Write(b); err != nil {
		return "", err
	}
	line, err := c.br.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", fmt.Errorf("%w: empty reply", errRedisReply)
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", fmt.Errorf("%w: %s", errRedisReply, line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("%w: bulk reply %q", errRedisReply, line)
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(c.br, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return "", fmt.Errorf("%w: unexpected reply %q", errRedisReply, line)
}

// pubsubOmem returns the largest output buffer (omem, bytes) and output
// list length (oll) among the clients of a CLIENT LIST that are in
// pub/sub mode, and how many there are.
func pubsubOmem(list string) (omem, oll int64, clients int) {
	for _, line := range strings.Split(list, "\n") {
		var sub, o, l int64
		pubsub := false
		for _, f := range strings.Fields(line) {
			k, v, ok := strings.Cut(f, "=")
			if !ok {
				continue
			}
			n, _ := strconv.ParseInt(v, 10, 64)
			switch k {
			case "sub", "psub", "ssub":
				sub += n
			case "flags":
				pubsub = pubsub || strings.Contains(v, "P")
			case "omem":
				o = n
			case "oll":
				l = n
			}
		}
		if sub > 0 || pubsub {
			clients++
			omem, oll = max(omem, o), max(oll, l)
		}
	}
	return omem, oll, clients
}

// omemPeriod is how often the node's pub/sub output buffer is sampled.
const omemPeriod = 100 * time.Millisecond

// omemSampler reads CLIENT LIST every omemPeriod and keeps the maxima.
type omemSampler struct {
	mu      sync.Mutex
	res     OmemResult
	stopped chan struct{}
	done    chan struct{}
}

// startOmem samples addr until the returned sampler is stopped.
func startOmem(ctx context.Context, addr string) *omemSampler {
	s := &omemSampler{stopped: make(chan struct{}), done: make(chan struct{})}
	s.res.Redis = addr
	go func() {
		defer close(s.done)
		var c *redisConn
		defer func() {
			if c != nil {
				c.close()
			}
		}()
		t := time.NewTicker(omemPeriod)
		defer t.Stop()
		for {
			if c == nil {
				c, _ = dialRedis(ctx, addr)
			}
			if c != nil {
				list, err := c.do("CLIENT", "LIST")
				s.mu.Lock()
				if err != nil {
					s.res.Errors++
					c.close()
					c = nil
				} else {
					omem, oll, n := pubsubOmem(list)
					s.res.Samples++
					s.res.MaxBytes = max(s.res.MaxBytes, omem)
					s.res.MaxList = max(s.res.MaxList, oll)
					s.res.Clients = max(s.res.Clients, n)
				}
				s.mu.Unlock()
			}
			select {
			case <-s.stopped:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// stop ends the sampling and returns its maxima.
func (s *omemSampler) stop() OmemResult {
	close(s.stopped)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.res
}
