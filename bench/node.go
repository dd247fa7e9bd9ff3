package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// node is a subsock process the harness started.
type node struct {
	cmd    *exec.Cmd
	target string        // ws://addr/ws
	exited chan struct{} // closed when the process has exited
	err    error         // the exit status, valid once exited is closed
}

// spawnNode starts bin with args (adding -addr on a free loopback port when
// args name none) and waits until /healthz answers.
func spawnNode(ctx context.Context, bin string, args, env []string, logTo io.Writer) (*node, error) {
	addr := flagValue(args, "addr")
	if addr == "" {
		port, err := freePort()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrNode, err)
		}
		addr = "127.0.0.1:" + strconv.Itoa(port)
		args = append(append([]string(nil), args...), "-addr", addr)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("%w: -addr %q: %v", ErrNode, addr, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	target := "ws://" + net.JoinHostPort(host, port) + "/ws"
	if err := checkTarget(target); err != nil {
		return nil, err
	}
	// The harness manages the node's lifetime: it must never outlive us.
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logTo, logTo
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNode, err)
	}
	n := &node{cmd: cmd, target: target, exited: make(chan struct{})}
	go func() {
		n.err = cmd.Wait()
		close(n.exited)
	}()
	if err := n.waitHealthy(ctx, 20*time.Second); err != nil {
		n.stop(5 * time.Second)
		return nil, err
	}
	return n, nil
}

func (n *node) pid() int { return n.cmd.Process.Pid }

// waitHealthy polls /healthz until it answers 200, the process exits, or
// the limit passes.
func (n *node) waitHealthy(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	url := httpBase(n.target) + "/healthz"
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-n.exited:
			return fmt.Errorf("%w: exited before it was healthy: %v", ErrNode, n.err)
		case <-ctx.Done():
			return fmt.Errorf("%w: not healthy after %s", ErrNode, limit)
		case <-tick.C:
		}
	}
}

// stop sends SIGTERM (graceful drain) and kills the node after grace.
func (n *node) stop(grace time.Duration) error {
	select {
	case <-n.exited:
		return n.err
	default:
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-n.exited:
		return n.err
	case <-t.C:
		_ = n.cmd.Process.Kill()
		<-n.exited
		return fmt.Errorf("%w: did not stop within %s of SIGTERM", ErrNode, grace)
	}
}

// flagValue finds -name v, --name v, -name=v or --name=v in args.
func flagValue(args []string, name string) string {
	for i, a := range args {
		a = strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// httpBase turns ws://host:port/ws into http://host:port.
func httpBase(target string) string {
	u, err := url.Parse(target)
	if err != nil {
		return ""
	}
	return "http://" + u.Host
}

// probe reads a node's resources: /proc/<pid> when the PID is known,
// otherwise the process_* series of each target's /metrics (summed).
type probe struct {
	pid     int
	bases   []string
	client  *http.Client
	procDir string // "/proc"; tests point it elsewhere
}

func newProbe(pid int, targets []string) *probe {
	p := &probe{pid: pid, client: &http.Client{Timeout: 5 * time.Second}, procDir: "/proc"}
	for _, t := range targets {
		p.bases = append(p.bases, httpBase(t))
	}
	return p
}

// source names where RSS and CPU come from.
func (p *probe) source() string {
	if p.pid > 0 {
		return "/proc/" + strconv.Itoa(p.pid)
	}
	return "/metrics process_*"
}

// rss returns the node's resident set in bytes.
func (p *probe) rss(ctx context.Context) (int64, error) {
	if p.pid > 0 {
		b, err := os.ReadFile(fmt.Sprintf("%s/%d/status", p.procDir, p.pid))
		if err != nil {
			return 0, err
		}
		return parseStatusRSS(b)
	}
	m, err := p.metrics(ctx)
	if err != nil {
		return 0, err
	}
	return int64(m["process_resident_memory_bytes"]), nil
}

// clockTicks is USER_HZ, 100 on every Linux this runs on (sysconf needs cgo).
const clockTicks = 100

// cpu returns the node's user+system CPU seconds so far.
func (p *probe) cpu(ctx context.Context) (float64, error) {
	if p.pid > 0 {
		return p.procCPU(p.pid)
	}
	m, err := p.metrics(ctx)
	if err != nil {
		return 0, err
	}
	return m["process_cpu_seconds_total"], nil
}

// gc asks every target's node to collect garbage and return freed memory
// to the OS (POST /debug/gc, served by a node started with -pprof).
func (p *probe) gc(ctx context.Context) error {
	for _, base := range p.bases {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/debug/gc", nil)
		if err != nil {
			return err
		}
		resp, err := p.client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("%w: %s/debug/gc: HTTP %d (start the node with -pprof)", ErrNode, base, resp.StatusCode)
		}
	}
	return nil
}

// profile saves the first target's /debug/pprof/<what> to path.
func (p *probe) profile(ctx context.Context, what, path string) error {
	client := &http.Client{} // a CPU profile outlives p.client's timeout
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.bases[0]+"/debug/pprof/"+what, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: /debug/pprof/%s: HTTP %d (start the node with -pprof)", ErrNode, what, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// procCPU returns the user+system CPU seconds of any process.
func (p *probe) procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("%s/%d/stat", p.procDir, pid))
	if err != nil {
		return 0, err
	}
	ticks, err := parseStatCPU(b)
	return float64(ticks) / clockTicks, err
}

// metrics scrapes every target's /metrics and sums the unlabelled series.
func (p *probe) metrics(ctx context.Context) (map[string]float64, error) {
	sum := map[string]float64{}
	for _, base := range p.bases {
		body, err := p.scrape(ctx, base)
		if err != nil {
			return nil, err
		}
		m, err := parseMetrics(body)
		if err != nil {
			return nil, err
		}
		for k, v := range m {
			sum[k] += v
		}
	}
	return sum, nil
}

// families scrapes every target's /metrics and sums each family named
// with prefix over all its series, labelled or not, and all targets.
func (p *probe) families(ctx context.Context, prefix string) (map[string]seriesSum, error) {
	sum := map[string]seriesSum{}
	for _, base := range p.bases {
		body, err := p.scrape(ctx, base)
		if err != nil {
			return nil, err
		}
		m, err := parseSeriesSums(body, prefix)
		if err != nil {
			return nil, err
		}
		for k, v := range m {
			s := sum[k]
			s.Sum += v.Sum
			s.N += v.N
			sum[k] = s
		}
	}
	return sum, nil
}

// scrape returns the body of base's /metrics.
func (p *probe) scrape(ctx context.Context, base string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	_ = resp.Body.Close()
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: %s/metrics: HTTP %d", ErrNode, base, resp.StatusCode)
	}
	return body, nil
}

// loadAvg returns the 1-minute load average, or 0.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// parseStatusRSS reads VmRSS (kB) from /proc/<pid>/status.
func parseStatusRSS(b []byte) (int64, error) {
	for _, line := range bytes.Split(b, []byte("\n")) {
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := strings.Fields(string(rest))
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("%w: VmRSS line %q", ErrMalformed, line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb < 0 {
			return 0, fmt.Errorf("%w: VmRSS line %q", ErrMalformed, line)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("%w: no VmRSS in status", ErrMalformed)
}

// parseStatCPU returns utime+stime (clock ticks) from /proc/<pid>/stat. The
// command name may hold spaces and parentheses, so fields are counted from
// the last ')'.
func parseStatCPU(b []byte) (int64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("%w: stat without ')'", ErrMalformed)
	}
	// After ") " come fields 3 (state) onwards; utime and stime are 14 and 15.
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("%w: stat has %d fields after the name", ErrMalformed, len(f))
	}
	var total int64
	for _, s := range f[11:13] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v < 0 {
			return 0, fmt.Errorf("%w: stat time %q", ErrMalformed, s)
		}
		total += v
	}
	return total, nil
}

// parseMetrics reads the unlabelled samples of a Prometheus text exposition
// (labelled series are skipped: the harness reads only plain gauges and
// counters).
func parseMetrics(b []byte) (map[string]float64, error) {
	m := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, ok := strings.Cut(line, " ")
		if !ok {
			return nil, fmt.Errorf("%w: metrics line %q", ErrMalformed, line)
		}
		if strings.ContainsRune(name, '{') {
			continue
		}
		val, _, _ := strings.Cut(strings.TrimSpace(rest), " ") // a timestamp may follow
		v, err := strconv.ParseFloat(val, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: metrics value in %q", ErrMalformed, line)
		}
		m[name] = v
	}
	if err := sc.Err(); err != nil {
		return nil, errors.Join(ErrMalformed, err)
	}
	return m, nil
}

// seriesSum is one metric family's samples added up, and how many there
// were (e.g. the partitions reporting a lag).
type seriesSum struct {
	Sum float64
	N   int
}

// parseSeriesSums sums the samples of every family whose name starts with
// prefix in a Prometheus text exposition, over all their label sets.
// Label values are skipped as quoted strings, so a '}' or a space inside
// one does not end them.
func parseSeriesSums(b []byte, prefix string) (map[string]seriesSum, error) {
	m := map[string]seriesSum{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || !strings.HasPrefix(line, prefix) {
			continue
		}
		end := strings.IndexAny(line, "{ ")
		if end < 0 {
			return nil, fmt.Errorf("%w: metrics line %q", ErrMalformed, line)
		}
		name, rest := line[:end], line[end:]
		if rest[0] == '{' {
			n, ok := skipLabels(rest)
			if !ok {
				return nil, fmt.Errorf("%w: labels in %q", ErrMalformed, line)
			}
			rest = rest[n:]
		}
		f := strings.Fields(rest) // the value, then perhaps a timestamp
		if len(f) == 0 {
			return nil, fmt.Errorf("%w: no value in %q", ErrMalformed, line)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return nil, fmt.Errorf("%w: metrics value in %q", ErrMalformed, line)
		}
		s := m[name]
		s.Sum += v
		s.N++
		m[name] = s
	}
	if err := sc.Err(); err != nil {
		return nil, errors.Join(ErrMalformed, err)
	}
	return m, nil
}

// skipLabels returns the length of the {…} label set at the start of s.
func skipLabels(s string) (int, bool) {
	quoted := false
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && c == '}':
			return i + 1, true
		}
	}
	return 0, false
}
