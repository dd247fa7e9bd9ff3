package poller

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// errListenerClosed carries the word netpoll looks for ("closed") to stop
// its accept loop.
var errListenerClosed = errors.New("poller: listener closed")

// listener is the netpoll.Listener subsock hands to netpoll, in place of
// netpoll's own conversion, for three reasons:
//   - netpoll's Close closes the duplicated descriptor twice (once by number,
//     once through its os.File), which can close a descriptor reused in
//     between by another connection;
//   - stopping must not close the descriptor while netpoll still has it in
//     epoll, for the same reason: StopAccepting shuts the socket down
//     instead, so the kernel refuses new connections at once, and the
//     descriptor is closed only by Close, after netpoll let go of it;
//   - accepted sockets get TCP_NODELAY, which netpoll sets only on its own
//     connection type.
type listener struct {
	ln      net.Listener // the caller's, closed by Close
	file    *os.File     // duplicate of ln's descriptor, owned here
	fd      int
	addr    net.Addr
	stopped atomic.Bool
	once    sync.Once
}

func newListener(ln net.Listener) (*listener, error) {
	fl, ok := ln.(interface{ File() (*os.File, error) })
	if !ok {
		return nil, errors.New("poller: listener must be TCP or Unix")
	}
	f, err := fl.File()
	if err != nil {
		return nil, err
	}
	fd := int(f.Fd())
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = f.Close()
		return nil, err
	}
	return &listener{ln: ln, file: f, fd: fd, addr: ln.Addr()}, nil
}

// Accept takes one pending connection; nil, nil means none is pending.
func (l *listener) Accept() (net.Conn, error) {
	if l.stopped.Load() {
		return nil, errListenerClosed
	}
	nfd, sa, err := unix.Accept4(l.fd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	if err != nil {
		if err == unix.EAGAIN {
			return nil, nil
		}
		if l.stopped.Load() {
			return nil, errListenerClosed
		}
		return nil, err
	}
	if _, tcp := l.addr.(*net.TCPAddr); tcp {
		_ = unix.SetsockoptInt(nfd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	}
	return &acceptedConn{fd: nfd, local: l.addr, remote: sockaddrAddr(sa)}, nil
}

// stop makes the kernel refuse new connections without closing the
// descriptor, and wakes netpoll's accept loop so it exits.
func (l *listener) stop() {
	if l.stopped.Swap(true) {
		return
	}
	_ = unix.Shutdown(l.fd, unix.SHUT_RDWR)
}

// Close releases both descriptors, each exactly once.
func (l *listener) Close() error {
	l.stop()
	var err error
	l.once.Do(func() { err = errors.Join(l.file.Close(), l.ln.Close()) })
	return err
}

func (l *listener) Addr() net.Addr { return l.addr }
func (l *listener) Fd() int        { return l.fd }

func sockaddrAddr(sa unix.Sockaddr) net.Addr {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: append(net.IP(nil), a.Addr[:]...), Port: a.Port}
	case *unix.SockaddrInet6:
		return &net.TCPAddr{IP: append(net.IP(nil), a.Addr[:]...), Port: a.Port}
	case *unix.SockaddrUnix:
		return &net.UnixAddr{Name: a.Name, Net: "unix"}
	}
	return nil
}

// acceptedConn hands netpoll a descriptor and its addresses; netpoll copies
// them into its own connection and never calls the other methods.
type acceptedConn struct {
	fd            int
	local, remote net.Addr
}

var errNotUsed = errors.New("poller: accepted descriptor is driven by netpoll")

func (c *acceptedConn) Fd() int                          { return c.fd }
func (c *acceptedConn) LocalAddr() net.Addr              { return c.local }
func (c *acceptedConn) RemoteAddr() net.Addr             { return c.remote }
func (c *acceptedConn) Read([]byte) (int, error)         { return 0, errNotUsed }
func (c *acceptedConn) Write([]byte) (int, error)        { return 0, errNotUsed }
func (c *acceptedConn) Close() error                     { return syscall.Close(c.fd) }
func (c *acceptedConn) SetDeadline(time.Time) error      { return errNotUsed }
func (c *acceptedConn) SetReadDeadline(time.Time) error  { return errNotUsed }
func (c *acceptedConn) SetWriteDeadline(time.Time) error { return errNotUsed }
