package poller

import (
	"fmt"
	"sync"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// epollWaiter parks connections whose socket is full and hands them back
// to their writer once it is writable. It is a second epoll instance of our
// own: netpoll's loops watch only readability for these descriptors.
type epollWaiter struct {
	epfd int
	wake int // eventfd in the set: written by close to end run's epoll_wait
	log  *zap.Logger

	mu     sync.Mutex
	parked map[int32]*Conn // by fd
	err    error           // why run stopped early; nil while it runs
}

func newEpollWaiter(log *zap.Logger) (*epollWaiter, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		_ = unix.Close(fd)
		return nil, err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}
	if err := unix.EpollCtl(fd, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		_ = unix.Close(fd)
		_ = unix.Close(wake)
		return nil, err
	}
	return &epollWaiter{epfd: fd, wake: wake, log: log, parked: make(map[int32]*Conn)}, nil
}

// park arms a one-shot writable notification for c.
func (e *epollWaiter) park(c *Conn) {
	e.mu.Lock()
	e.parked[int32(c.fd)] = c
	e.mu.Unlock()

	c.wmu.Lock()
	c.mu.Lock()
	if c.state&stClosed != 0 || c.state&stParked == 0 {
		// Closed, or Abort already woke it.
		c.mu.Unlock()
		c.wmu.Unlock()
		e.forget(c)
		return
	}
	op := unix.EPOLL_CTL_ADD
	if c.state&stInEpoll != 0 {
		op = unix.EPOLL_CTL_MOD
	}
	c.state |= stInEpoll
	c.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLOUT | unix.EPOLLONESHOT, Fd: int32(c.fd)}
	err := unix.EpollCtl(e.epfd, op, c.fd, &ev)
	if err == unix.EEXIST {
		err = unix.EpollCtl(e.epfd, unix.EPOLL_CTL_MOD, c.fd, &ev)
	}
	c.wmu.Unlock()
	if err != nil {
		// Cannot wait for writability: treat like a dead socket.
		c.Abort(nil)
	}
}

// forget drops c's entry; called when c closes.
func (e *epollWaiter) forget(c *Conn) {
	e.mu.Lock()
	if e.parked[int32(c.fd)] == c {
		delete(e.parked, int32(c.fd))
	}
	e.mu.Unlock()
}

// run waits for writable sockets until stop is closed. It blocks in
// epoll_wait; stop is signalled through the wake eventfd (see stopRun).
func (e *epollWaiter) run(stop <-chan struct{}) {
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(e.epfd, events, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			// Parked sockets would never be resumed: say so loudly, and let
			// the node report itself degraded (Server.Err).
			e.mu.Lock()
			e.err = fmt.Errorf("poller: writable-socket waiter stopped: %w", err)
			e.mu.Unlock()
			e.log.Error("writable-socket waiter stopped; parked connections will not be resumed", zap.Error(err))
			return
		}
		for i := 0; i < n; i++ {
			fd := events[i].Fd
			if fd == int32(e.wake) {
				select {
				case <-stop:
					return
				default:
					continue
				}
			}
			e.mu.Lock()
			c := e.parked[fd]
			delete(e.parked, fd)
			e.mu.Unlock()
			if c == nil {
				continue // closed since; the fd may belong to someone else now
			}
			c.mu.Lock()
			wake := c.state&stParked != 0 && c.state&stClosed == 0
			c.state &^= stParked
			c.mu.Unlock()
			if wake {
				c.w.push(c, false)
			}
		}
	}
}

// stopRun wakes run so it sees stop closed.
func (e *epollWaiter) stopRun() {
	one := [8]byte{1} // any non-zero counter value wakes the waiter
	_, _ = unix.Write(e.wake, one[:])
}

// failed returns why run stopped early, nil while it is running.
func (e *epollWaiter) failed() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err
}

func (e *epollWaiter) close() {
	_ = unix.Close(e.epfd)
	_ = unix.Close(e.wake)
}
