package testserver

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// NATS starts nats-server on 127.0.0.1:<free port> with HTTP monitoring on
// MonitorAddr (for /connz, /subsz, /healthz). Its URL is nats://host:port.
func NATS(t testing.TB) *Server {
	t.Helper()
	bin := lookBin(t, "nats-server")
	return launch(t, func(ports []int) *Server {
		dir := t.TempDir()
		addr, mon := hostPort(ports[0]), hostPort(ports[1])
		return &Server{
			Addr:        addr,
			URL:         "nats://" + addr,
			MonitorAddr: mon,
			bin:         bin,
			args: []string{
				"-a", "127.0.0.1",
				"-p", strconv.Itoa(ports[0]),
				"-m", strconv.Itoa(ports[1]),
				"-l", filepath.Join(dir, "nats.log"),
			},
			dir: dir,
			log: filepath.Join(dir, "nats.log"),
			ready: func(ctx context.Context) error {
				if err := httpOK(ctx, "http://"+mon+"/healthz"); err != nil {
					return err
				}
				return natsInfo(ctx, addr)
			},
		}
	}, 2)
}

// natsInfo is nil once the client port greets with INFO.
func natsInfo(ctx context.Context, addr string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "INFO ") {
		return fmt.Errorf("testserver: nats greeted with %q", line)
	}
	return nil
}

// httpOK is nil once url answers 200.
func httpOK(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("testserver: %s: %s", url, resp.Status)
	}
	return nil
}
