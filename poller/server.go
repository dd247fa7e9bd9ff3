package poller

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudwego/netpoll"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Handler receives a connection's events. See the package comment for
// which goroutine runs each and what it may do.
type Handler interface {
	// OnOpen runs once when a connection is accepted, before any OnData.
	OnOpen(c *Conn)
	// OnData runs when bytes arrived; it must consume all of r.
	OnData(c *Conn, r netpoll.Reader)
	// OnClose runs once when the connection is gone.
	OnClose(c *Conn)
}

// Stats are the poller's counters.
type Stats struct {
	Conns     int64  // open connections
	Accepted  uint64 // since start
	BytesOut  uint64
	Writes    uint64 // write syscalls
	Overflows uint64 // connections aborted for an overflowing queue
}

// Server accepts connections on a listener and runs them on netpoll loops.
type Server struct {
	cfg     Config
	h       Handler
	evl     netpoll.EventLoop
	writers []*writer
	ep      *epollWaiter

	stop chan struct{}
	wg   sync.WaitGroup

	mu        sync.Mutex
	ln        *listener
	accepting atomic.Bool

	conns    atomic.Int64
	accepted atomic.Uint64
	ids      atomic.Uint64
}

type ctxKey struct{}

// netpoll's settings are process-wide and read before its first
// connection: the first Server sets them, later ones must agree.
var (
	configureMu sync.Mutex
	configured  *Config
)

// configure applies process-wide netpoll settings once; a later Server
// asking for other loops or buffer sizes gets ErrConfigConflict rather
// than a silent share of the first one's.
func configure(cfg Config) error {
	configureMu.Lock()
	defer configureMu.Unlock()
	if configured != nil {
		if configured.Loops != cfg.Loops || configured.ReadBufferSize != cfg.ReadBufferSize {
			return fmt.Errorf("%w: have %d loops and %d-byte buffers, asked for %d and %d", ErrConfigConflict,
				configured.Loops, configured.ReadBufferSize, cfg.Loops, cfg.ReadBufferSize)
		}
		return nil
	}
	// The node-wide minimum of a buffer node; netpoll keeps one per
	// connection for input, so it is the floor of idle memory.
	netpoll.LinkBufferCap = cfg.ReadBufferSize
	err := netpoll.Configure(netpoll.Config{
		PollerNum:    cfg.Loops,
		BufferSize:   cfg.ReadBufferSize,
		LoggerOutput: zapWriter{cfg.Logger.Named("netpoll")},
	})
	if err != nil {
		return err
	}
	if !netpollVerified() {
		cfg.Logger.Warn("netpoll version not verified: running without the write-scratch trim (about 1.2 KiB more per idle connection), "+
			"and the listener's stop relies on netpoll ending its accept loop on a \"closed\" error; check poller/compat.go",
			zap.String("version", netpollVersion()))
	}
	configured = &cfg
	return nil
}

// New returns a Server that calls h. Its writer goroutines start at once;
// Close stops them.
func New(cfg Config, h Handler) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := configure(cfg); err != nil {
		return nil, err
	}
	ep, err := newEpollWaiter(cfg.Logger)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, h: h, ep: ep, stop: make(chan struct{})}
	s.accepting.Store(true)
	for i := 0; i < cfg.Writers; i++ {
		s.writers = append(s.writers, newWriter(s, cfg))
	}
	s.evl, err = netpoll.NewEventLoop(s.onRequest, netpoll.WithOnPrepare(s.onPrepare))
	if err != nil {
		ep.close()
		return nil, err
	}
	for _, w := range s.writers {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); w.run(s.stop) }()
	}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); ep.run(s.stop) }()
	return s, nil
}

// Serve accepts connections from ln until Close. It blocks.
func (s *Server) Serve(ln net.Listener) error {
	nl, err := newListener(ln)
	if err != nil {
		return err
	}
	if s.cfg.RecvBuffer > 0 {
		// Accepted sockets inherit it, and advertise a window that fits
		// it from their SYN-ACK on.
		_ = unix.SetsockoptInt(nl.fd, unix.SOL_SOCKET, unix.SO_RCVBUF, s.cfg.RecvBuffer)
	}
	s.mu.Lock()
	s.ln = nl
	s.mu.Unlock()
	err = s.evl.Serve(nl)
	if s.accepting.Load() {
		return err
	}
	return ErrServerClosed
}

// StopAccepting makes the kernel refuse new connections; open ones keep
// running. (netpoll's own Shutdown would close every idle connection at
// once, before a graceful drain could say goodbye.)
func (s *Server) StopAccepting() {
	if !s.accepting.Swap(false) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		s.ln.stop()
	}
}

// Close stops accepting, closes what is left, stops the writer goroutines
// and waits for them. Drain the connections first for a graceful stop.
func (s *Server) Close() error {
	select {
	case <-s.stop:
		return nil
	default:
	}
	s.StopAccepting()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := s.evl.Shutdown(ctx)
	s.mu.Lock()
	if s.ln != nil {
		_ = s.ln.Close() // after netpoll let go of the descriptor
	}
	s.mu.Unlock()
	close(s.stop)
	s.ep.stopRun()
	s.wg.Wait()
	s.ep.close()
	if errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	return err
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	st := Stats{Conns: s.conns.Load(), Accepted: s.accepted.Load()}
	for _, w := range s.writers {
		st.BytesOut += w.bytesOut.Load()
		st.Writes += w.writes.Load()
		st.Overflows += w.overflows.Load()
	}
	return st
}

// Err is nil while the server's own goroutines run; otherwise it says
// which one stopped and why (the node is then degraded).
func (s *Server) Err() error { return s.ep.failed() }

// Config returns the effective configuration, defaults filled in.
func (s *Server) Config() Config { return s.cfg }

func (s *Server) onPrepare(nc netpoll.Connection) context.Context {
	fdc, ok := nc.(interface{ Fd() int })
	if !ok {
		_ = nc.Close()
		return context.Background()
	}
	if !s.accepting.Load() {
		_ = nc.Close()
		return context.Background()
	}
	trimWriteScratch(nc)
	if s.cfg.SendBuffer > 0 {
		_ = unix.SetsockoptInt(fdc.Fd(), unix.SOL_SOCKET, unix.SO_SNDBUF, s.cfg.SendBuffer)
	}
	id := s.ids.Add(1)
	c := &Conn{nc: nc, fd: fdc.Fd(), s: s, w: s.writers[id%uint64(len(s.writers))]}
	s.conns.Add(1)
	s.accepted.Add(1)
	_ = nc.AddCloseCallback(c.onClosed)
	s.h.OnOpen(c)
	return context.WithValue(context.Background(), ctxKey{}, c)
}

func (s *Server) onRequest(ctx context.Context, nc netpoll.Connection) error {
	c, _ := ctx.Value(ctxKey{}).(*Conn)
	if c == nil {
		return nc.Close()
	}
	s.h.OnData(c, nc.Reader())
	return nil
}

func (s *Server) closed(c *Conn) {
	s.conns.Add(-1)
	s.h.OnClose(c)
}
