package poller

import (
	"sync"

	"golang.org/x/sys/unix"
)

// epollWaiter parks connections whose socket is full and hands them back
// to their writer once it is writable. It is a second epoll instance of our
// own: netpoll's loops watch only readability for these descriptors.
type epollWaiter struct {
	epfd int

	mu     sync.Mutex
	parked map[int32]*Conn // by fd
}

func newEpollWaiter() (*epollWaiter, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	return &epollWaiter{epfd: fd, parked: make(map[int32]*Conn)}, nil
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

// run waits for writable sockets until stop is closed.
func (e *epollWaiter) run(stop <-chan struct{}) {
	events := make([]unix.EpollEvent, 256)
	for {
		select {
		case <-stop:
			return
		default:
		}
		n, err := unix.EpollWait(e.epfd, events, 100)
		if err != nil && err != unix.EINTR {
			return
		}
		for i := 0; i < n; i++ {
			fd := events[i].Fd
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
				c.w.push(c)
			}
		}
	}
}

func (e *epollWaiter) close() { _ = unix.Close(e.epfd) }
