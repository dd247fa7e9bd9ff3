// Command tuning-measure measures what an idle connection and its socket
// buffers cost on one subsock node: the node's RSS and heap, the kernel's
// socket slabs and the TCP buffer memory of /proc/net/sockstat and ss(8),
// idle, after one message reached every connection, and while a share of
// the connections stop reading. scripts/tuning-measure.sh runs it once per
// node configuration; docs/tuning.md reports the figures.
//
// Everything stays on loopback and is bounded: -conns connections (one
// goroutine dials them, a few at a time), a fixed number of publishes, then
// the node is stopped with SIGTERM. Both ends of every connection live in
// this kernel, so the system-wide kernel figures (slab, sockstat) count two
// sockets per connection; the ss figures are the node's sockets alone.
package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

type options struct {
	node         string
	port         int
	conns        int
	sources      int
	clientRcvBuf int
	stallConns   int
	stallMsgs    int
	stallSize    int
	settle       time.Duration
	label        string
	burst        int
	nodeArgs     []string
}

func main() {
	var o options
	flag.StringVar(&o.node, "node", "bin/subsock", "subsock binary to start")
	flag.IntVar(&o.port, "port", 18480, "loopback port for the node")
	flag.IntVar(&o.conns, "conns", 5000, "WebSocket connections, one subscription each")
	flag.IntVar(&o.sources, "sources", 4, "source addresses 127.0.0.2 … 127.0.0.(1+N), as the bench's workers use")
	flag.IntVar(&o.clientRcvBuf, "client-rcvbuf", 4096, "SO_RCVBUF of the client sockets, so a client that stops reading fills the node's send buffer rather than its own")
	flag.IntVar(&o.stallConns, "stall-conns", 1000, "connections that also subscribe to the stall topic")
	flag.IntVar(&o.stallMsgs, "stall-msgs", 48, "messages published to the stall topic while its subscribers do not read")
	flag.IntVar(&o.stallSize, "stall-size", 4096, "payload bytes of each stall message")
	flag.DurationVar(&o.settle, "settle", 2*time.Second, "wait before each reading")
	flag.StringVar(&o.label, "label", "", "name of this configuration in the output")
	flag.IntVar(&o.burst, "burst", 0, "instead of the memory phases: open -conns connections from this many goroutines at once and report handshake times and the namespace's listen drops (the accept backlog test)")
	flag.Parse()
	o.nodeArgs = flag.Args()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "tuning-measure:", err)
		os.Exit(1)
	}
}

// reading is one snapshot of the node and the kernel.
type reading struct {
	rss, heap     int64 // node VmRSS and go_memstats_heap_inuse_bytes, bytes
	slab          int64 // socket-related slab caches, both ends, bytes
	tcpMemPages   int64 // /proc/net/sockstat "TCP: mem", pages, system-wide
	srv           skmem // the node's own sockets (ss -tm)
	srvSockets    int
	cliRQueued    int64 // bytes waiting in the clients' receive queues
	cliSockets    int
	sockstatInuse int64
	listenDrops   int64 // TcpExt ListenDrops of this network namespace
}

// skmem sums ss's skmem fields over a set of sockets.
type skmem struct {
	r, rb, t, tb, f, w int64
}

func run(o options) error {
	addr := fmt.Sprintf("127.0.0.1:%d", o.port)
	base := "http://" + addr
	args := append([]string{"-addr", addr, "-pprof", "-log-level", "warn",
		"-ping-interval", "10m", "-ping-timeout", "20m"}, o.nodeArgs...)
	cmd := exec.Command(o.node, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	pid := cmd.Process.Pid
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}()
	if err := waitHealthy(base, 20*time.Second); err != nil {
		return err
	}

	fmt.Printf("config %q: node %s %s\n", o.label, o.node, strings.Join(args, " "))
	r0, err := read(o, pid, base)
	if err != nil {
		return err
	}

	if o.burst > 0 {
		return burst(o)
	}
	t0 := time.Now()
	conns, _, err := connectAll(o, 32)
	defer closeAll(conns)
	if err != nil {
		return err
	}
	connectTime := time.Since(t0)
	rssStorm, _ := rss(pid) // before any forced GC: what GOGC left after the connect storm
	time.Sleep(o.settle)
	rIdle, err := read(o, pid, base)
	if err != nil {
		return err
	}

	// One small message to every connection, not yet read by the clients.
	if err := publish(base, "tune.all", []byte(`{"n":1,"pad":"0123456789abcdef0123456789abcdef"}`), o.conns); err != nil {
		return err
	}
	time.Sleep(o.settle)
	rUnread, err := read(o, pid, base)
	if err != nil {
		return err
	}
	scratch := make([]byte, 1<<16)
	for i, c := range conns {
		if _, err := readMsg(c, scratch, 10*time.Second); err != nil {
			return fmt.Errorf("conn %d: reading the message: %w", i, err)
		}
	}
	time.Sleep(o.settle)
	rAfter, err := read(o, pid, base)
	if err != nil {
		return err
	}

	// The first stallConns connections stop reading while stallMsgs
	// messages of stallSize bytes are published to the topic they alone
	// share: where do the bytes wait, in the kernel or in the node's queue?
	payload := []byte(`"` + strings.Repeat("x", o.stallSize-2) + `"`)
	for range o.stallMsgs {
		if err := publish(base, "tune.stall", payload, o.stallConns); err != nil {
			return err
		}
	}
	time.Sleep(o.settle)
	rStall, err := read(o, pid, base)
	if err != nil {
		return err
	}
	for i := range o.stallConns {
		for range o.stallMsgs {
			if _, err := readMsg(conns[i], scratch, 20*time.Second); err != nil {
				return fmt.Errorf("conn %d: draining the stall topic: %w", i, err)
			}
		}
	}
	time.Sleep(o.settle)
	rDrained, err := read(o, pid, base)
	if err != nil {
		return err
	}

	n := int64(o.conns)
	fmt.Printf("  node before any connection: RSS %.1f MiB, heap in use %.1f MiB\n", mib(r0.rss), mib(r0.heap))
	fmt.Printf("  connect: %d conns in %v; node RSS right after the storm (no forced GC) %s/conn\n",
		o.conns, connectTime.Round(time.Millisecond), kib(rssStorm-r0.rss, n))
	fmt.Printf("  %-26s %12s %12s %14s %16s %14s %14s %16s %12s\n", "phase", "RSS/conn", "heap/conn",
		"slab/conn(2x)", "sockstat mem", "node skmem", "node tb/rb avg", "client rqueue", "listen drops")
	for _, p := range []struct {
		name string
		r    reading
	}{{"baseline (no conns)", r0}, {"idle", rIdle}, {"1 msg each, unread", rUnread},
		{"1 msg each, read", rAfter}, {"stall (node side)", rStall}, {"stall drained", rDrained}} {
		rs, hp, sl := "-", "-", "-"
		if p.r != r0 {
			rs, hp, sl = kib(p.r.rss-r0.rss, n), kib(p.r.heap-r0.heap, n), kib(p.r.slab-r0.slab, n)
		}
		node := p.r.srv.r + p.r.srv.w + p.r.srv.f
		avg := "-"
		if p.r.srvSockets > 0 {
			avg = fmt.Sprintf("%d/%d", p.r.srv.tb/int64(p.r.srvSockets), p.r.srv.rb/int64(p.r.srvSockets))
		}
		fmt.Printf("  %-26s %12s %12s %14s %10d pages %11.1f MiB %14s %12.1f MiB %12d\n", p.name, rs, hp, sl,
			p.r.tcpMemPages, mib(node), avg, mib(p.r.cliRQueued), p.r.listenDrops-r0.listenDrops)
	}
	stallTotal := int64(o.stallConns) * int64(o.stallMsgs) * int64(o.stallSize)
	fmt.Printf("  stall: %d conns × %d msgs × %d B = %.1f MiB asked; node kernel queue (w) %.1f MiB = %.1f KiB per stalled conn; node RSS +%.1f MiB over idle\n",
		o.stallConns, o.stallMsgs, o.stallSize, mib(stallTotal), mib(rStall.srv.w),
		float64(rStall.srv.w)/1024/float64(o.stallConns), mib(rStall.rss-rAfter.rss))
	fmt.Printf("  sockets seen by ss: node %d, clients %d; TCP inuse %d\n", rIdle.srvSockets, rIdle.cliSockets, rIdle.sockstatInuse)
	return nil
}

// closeAll resets every connection (SO_LINGER 0, as the bench's recover
// scenario does) so that no client port waits in TIME_WAIT and the next run
// finds the ephemeral port range whole.
func closeAll(conns []net.Conn) {
	for _, c := range conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = c.Close()
	}
}

func kib(v, n int64) string { return fmt.Sprintf("%.2f KiB", float64(v)/1024/float64(n)) }
func mib(v int64) float64   { return float64(v) / (1 << 20) }

func waitHealthy(base string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("node did not become healthy")
}

// burst opens o.conns connections from o.burst goroutines at once: a
// connect storm larger than the accept backlog. A handshake whose final
// ACK found the accept queue full is dropped by the kernel and repaired by
// a SYN-ACK retransmission after ~1 s, which shows as a handshake of ≥ 1 s.
func burst(o options) error {
	sn0 := netstat("SyncookiesSent")
	ov0, dr0 := netstat("ListenOverflows"), netstat("ListenDrops")
	ct0, cs0 := conntrack()
	t0 := time.Now()
	conns, took, err := connectAll(o, o.burst)
	elapsed := time.Since(t0)
	time.Sleep(o.settle)
	if ct, cs := conntrack(); ct >= 0 && len(conns) > 0 {
		fmt.Printf("  conntrack: entries %+d, nf_conntrack slab %+.0f B per connection\n",
			ct-ct0, float64(cs-cs0)/float64(len(conns)))
	}
	closeAll(conns)
	if err != nil {
		fmt.Println("  first error:", err)
	}
	slices.Sort(took)
	slow := 0
	for _, d := range took {
		if d >= 900*time.Millisecond {
			slow++
		}
	}
	pct := func(q float64) time.Duration {
		if len(took) == 0 {
			return 0
		}
		return took[min(len(took)-1, int(q*float64(len(took))))].Round(time.Millisecond)
	}
	fmt.Printf("  burst: %d of %d upgraded from %d goroutines in %v (%.0f/s); handshake p50 %v p99 %v max %v; ≥ 0.9 s: %d; ListenOverflows +%d ListenDrops +%d SyncookiesSent +%d\n",
		len(conns), o.conns, o.burst, elapsed.Round(time.Millisecond), float64(len(conns))/elapsed.Seconds(),
		pct(0.5), pct(0.99), pct(1), slow, netstat("ListenOverflows")-ov0, netstat("ListenDrops")-dr0,
		netstat("SyncookiesSent")-sn0)
	return nil
}

// connectAll dials every connection from the given number of goroutines
// and subscribes each; it returns the connections and, for each, the time
// from dial to upgrade.
func connectAll(o options, workers int) ([]net.Conn, []time.Duration, error) {
	conns := make([]net.Conn, o.conns)
	took := make([]time.Duration, o.conns)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			scratch := make([]byte, 4096)
			for i := range next {
				t := time.Now()
				c, err := dialSub(o, i, scratch)
				took[i] = time.Since(t)
				if err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("conn %d: %w", i, err)
					}
					mu.Unlock()
					continue
				}
				conns[i] = c
			}
		}()
	}
	for i := range o.conns {
		next <- i
	}
	close(next)
	wg.Wait()
	out, outTook := conns[:0], took[:0]
	for i, c := range conns {
		if c != nil {
			out, outTook = append(out, c), append(outTook, took[i])
		}
	}
	return out, outTook, first
}

func dialSub(o options, i int, scratch []byte) (net.Conn, error) {
	src := net.IPv4(127, 0, 0, byte(2+i%o.sources))
	d := net.Dialer{
		LocalAddr: &net.TCPAddr{IP: src},
		Timeout:   10 * time.Second,
		Control: func(_, _ string, rc syscall.RawConn) error {
			if o.clientRcvBuf <= 0 {
				return nil
			}
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, o.clientRcvBuf)
			})
			return errors.Join(err, serr)
		},
	}
	c, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", o.port))
	if err != nil {
		return nil, err
	}
	fail := func(err error) (net.Conn, error) { _ = c.Close(); return nil, err }
	req := fmt.Sprintf("GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", o.port)
	if _, err := c.Write([]byte(req)); err != nil {
		return fail(err)
	}
	// Read the 101 byte by byte so nothing after it is consumed.
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	head := scratch[:0]
	one := make([]byte, 1)
	for !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
		if len(head) == cap(head) {
			return fail(errors.New("handshake response too long"))
		}
		if _, err := io.ReadFull(c, one); err != nil {
			return fail(err)
		}
		head = append(head, one[0])
	}
	if !bytes.HasPrefix(head, []byte("HTTP/1.1 101")) {
		return fail(fmt.Errorf("handshake: %q", head))
	}
	topics := `["tune.all"]`
	if i < o.stallConns {
		topics = `["tune.all","tune.stall"]`
	}
	if err := writeText(c, []byte(`{"op":"sub","id":1,"topics":`+topics+`}`)); err != nil {
		return fail(err)
	}
	for {
		p, err := readMsg(c, scratch, 10*time.Second)
		if err != nil {
			return fail(err)
		}
		if bytes.Contains(p, []byte(`"op":"ack"`)) {
			return c, nil
		}
		if bytes.Contains(p, []byte(`"op":"err"`)) {
			return fail(fmt.Errorf("sub: %s", p))
		}
	}
}

// writeText writes one masked text frame (RFC 6455 section 5.2); the mask
// is zero, which XORs nothing.
func writeText(c net.Conn, p []byte) error {
	if len(p) > 125 {
		return errors.New("frame too long for this client")
	}
	f := append([]byte{0x81, 0x80 | byte(len(p)), 0, 0, 0, 0}, p...)
	_, err := c.Write(f)
	return err
}

// readMsg reads frames until a data frame and returns its payload (in
// scratch); control frames are skipped.
func readMsg(c net.Conn, scratch []byte, limit time.Duration) ([]byte, error) {
	_ = c.SetReadDeadline(time.Now().Add(limit))
	var h [8]byte
	for {
		if _, err := io.ReadFull(c, h[:2]); err != nil {
			return nil, err
		}
		op, n := h[0]&0x0f, int(h[1]&0x7f)
		switch n {
		case 126:
			if _, err := io.ReadFull(c, h[:2]); err != nil {
				return nil, err
			}
			n = int(binary.BigEndian.Uint16(h[:2]))
		case 127:
			if _, err := io.ReadFull(c, h[:8]); err != nil {
				return nil, err
			}
			n = int(binary.BigEndian.Uint64(h[:8]))
		}
		if n > len(scratch) {
			return nil, fmt.Errorf("frame of %d bytes", n)
		}
		if _, err := io.ReadFull(c, scratch[:n]); err != nil {
			return nil, err
		}
		if op == 0x8 {
			return nil, fmt.Errorf("closed by the node: %q", scratch[:n])
		}
		if op < 0x8 {
			return scratch[:n], nil
		}
	}
}

func publish(base, topic string, body []byte, want int) error {
	resp, err := http.Post(base+"/publish?topic="+topic, "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte(fmt.Sprintf(`"subscribers":%d`, want))) {
		return fmt.Errorf("publish %s: %d %s", topic, resp.StatusCode, b)
	}
	return nil
}

func read(o options, pid int, base string) (reading, error) {
	var r reading
	resp, err := http.Post(base+"/debug/gc", "", nil)
	if err != nil {
		return r, err
	}
	_ = resp.Body.Close()
	if r.rss, err = rss(pid); err != nil {
		return r, err
	}
	if r.heap, err = metric(base, "go_memstats_heap_inuse_bytes"); err != nil {
		return r, err
	}
	if r.slab, err = socketSlab(); err != nil {
		return r, err
	}
	if r.tcpMemPages, r.sockstatInuse, err = sockstat(); err != nil {
		return r, err
	}
	if r.srv, r.srvSockets, err = ssSum(fmt.Sprintf("sport = :%d", o.port)); err != nil {
		return r, err
	}
	var cli skmem
	if cli, r.cliSockets, err = ssSum(fmt.Sprintf("dport = :%d", o.port)); err != nil {
		return r, err
	}
	r.cliRQueued = cli.r
	r.listenDrops = netstat("ListenDrops")
	return r, nil
}

func rss(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS")
}

func metric(base, name string) (int64, error) {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return int64(f), err
		}
	}
	return 0, fmt.Errorf("no %s in /metrics", name)
}

// socketSlab sums active objects × object size over the slab caches that
// grow with each socket: the TCP sock, its inode, file and dentry, and the
// epoll item watching it.
func socketSlab() (int64, error) {
	b, err := os.ReadFile("/proc/slabinfo")
	if err != nil {
		return 0, err
	}
	caches := map[string]bool{"TCP": true, "sock_inode_cache": true, "filp": true, "dentry": true,
		"eventpoll_epi": true, "eventpoll_pwq": true}
	var sum int64
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || !caches[f[0]] {
			continue
		}
		active, _ := strconv.ParseInt(f[1], 10, 64)
		size, _ := strconv.ParseInt(f[3], 10, 64)
		sum += active * size
	}
	return sum, nil
}

// conntrack returns this namespace's nf_conntrack_count and the bytes of
// the nf_conntrack slab cache (system-wide), or -1 without conntrack.
func conntrack() (count, slab int64) {
	b, err := os.ReadFile("/proc/sys/net/netfilter/nf_conntrack_count")
	if err != nil {
		return -1, 0
	}
	count, _ = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	sb, err := os.ReadFile("/proc/slabinfo")
	if err != nil {
		return count, 0
	}
	for line := range strings.SplitSeq(string(sb), "\n") {
		if f := strings.Fields(line); len(f) > 3 && f[0] == "nf_conntrack" {
			active, _ := strconv.ParseInt(f[1], 10, 64)
			size, _ := strconv.ParseInt(f[3], 10, 64)
			slab = active * size
		}
	}
	return count, slab
}

func sockstat() (mem, inuse int64, err error) {
	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		return 0, 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "TCP:" {
			continue
		}
		for i := 1; i+1 < len(f); i += 2 {
			v, _ := strconv.ParseInt(f[i+1], 10, 64)
			switch f[i] {
			case "mem":
				mem = v
			case "inuse":
				inuse = v
			}
		}
		return mem, inuse, nil
	}
	return 0, 0, errors.New("no TCP line in /proc/net/sockstat")
}

// ssSum runs ss -tmn over the established sockets matching filter and sums
// their skmem fields.
func ssSum(filter string) (skmem, int, error) {
	out, err := exec.Command("ss", "-tmnH", "state", "established", filter).Output()
	if err != nil {
		return skmem{}, 0, fmt.Errorf("ss: %w", err)
	}
	var s skmem
	n := 0
	for _, field := range strings.Fields(string(out)) {
		v, ok := strings.CutPrefix(field, "skmem:(")
		if !ok {
			continue
		}
		n++
		for kv := range strings.SplitSeq(strings.TrimSuffix(v, ")"), ",") {
			i := strings.IndexAny(kv, "0123456789")
			if i < 0 {
				continue
			}
			x, _ := strconv.ParseInt(kv[i:], 10, 64)
			switch kv[:i] {
			case "r":
				s.r += x
			case "rb":
				s.rb += x
			case "t":
				s.t += x
			case "tb":
				s.tb += x
			case "f":
				s.f += x
			case "w":
				s.w += x
			}
		}
	}
	return s, n, nil
}

// netstat returns a TcpExt counter of this network namespace (ListenDrops
// counts ListenOverflows too), or -1.
func netstat(name string) int64 {
	b, err := os.ReadFile("/proc/net/netstat")
	if err != nil {
		return -1
	}
	lines := strings.Split(string(b), "\n")
	for i := 0; i+1 < len(lines); i++ {
		if !strings.HasPrefix(lines[i], "TcpExt:") || !strings.HasPrefix(lines[i+1], "TcpExt:") {
			continue
		}
		names, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		for j := range names {
			if names[j] == name && j < len(vals) {
				v, _ := strconv.ParseInt(vals[j], 10, 64)
				return v
			}
		}
	}
	return -1
}
