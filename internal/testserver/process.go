package testserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Generous, because two cores are shared with other builds and tests.
const (
	startTimeout = 20 * time.Second
	stopTimeout  = 5 * time.Second
	pollEvery    = 10 * time.Millisecond
)

// installHint ends every "binary missing" failure.
const installHint = "run scripts/install-deps.sh (as root) to install it"

// Server is one server process on loopback. Addr is host:port; URL is
// what broker.Open takes; MonitorAddr is the HTTP monitoring host:port
// (NATS only).
type Server struct {
	Addr        string
	URL         string
	MonitorAddr string

	t     testing.TB
	bin   string
	args  []string
	dir   string
	log   string
	ready func(context.Context) error

	mu     sync.Mutex // guards cmd and exited; Start/Stop run one at a time
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd has been waited for
}

// lookBin fails the test when the binary is not installed.
func lookBin(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("testserver: %s not found in PATH; %s", name, installHint)
	}
	return p
}

// freePorts reserves n distinct loopback ports by listening on them at
// once, then releases them for the server to take. Another process could
// take one in between; callers retry with new ports when the bind fails.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ls := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("testserver: reserve a port: %v", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// errAddrInUse marks a start that failed because a reserved port was taken.
var errAddrInUse = errors.New("testserver: address already in use")

// Start (re)starts the server on the same ports and data directory and
// returns once it answers. Starting a running server does nothing.
func (s *Server) Start() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatalf("%v", err)
	}
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("testserver: %w", err)
	}
	cmd := exec.Command(s.bin, s.args...)
	cmd.Dir = s.dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("testserver: start %s: %w", s.bin, err)
	}
	logf.Close() // the child holds its own descriptor
	exited := make(chan struct{})
	go func() {
		cmd.Wait() // reaps the child; its exit status is read from the log
		close(exited)
	}()
	s.cmd, s.exited = cmd, exited

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	for {
		err := s.ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			s.cmd = nil
			tail := s.logTail()
			if containsAddrInUse(tail) {
				return fmt.Errorf("%w: %s", errAddrInUse, tail)
			}
			return fmt.Errorf("testserver: %s %v exited before answering; log:\n%s", filepath.Base(s.bin), s.args, tail)
		case <-ctx.Done():
			s.killLocked()
			return fmt.Errorf("testserver: %s on %s not ready after %v: %v; log:\n%s", filepath.Base(s.bin), s.Addr, startTimeout, err, s.logTail())
		case <-time.After(pollEvery):
		}
	}
}

// Stop terminates the server and waits for it to exit; its ports are free
// again when Stop returns. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killLocked()
}

func (s *Server) killLocked() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	s.cmd.Process.Signal(syscall.SIGCONT) // a paused server must run to exit
	select {
	case <-s.exited:
	case <-time.After(stopTimeout):
		s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

// Kill ends the server with SIGKILL, as a crash would: no shutdown, its
// clients' connections are cut. It returns once the process is gone and its
// ports are free; Start brings it back on the same ports. Killing a stopped
// server does nothing.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Pause stops the server with SIGSTOP: its connections stay open but
// nothing is answered (a hung or overloaded server) until Resume. It
// returns once every thread of the process is stopped, since a signal is
// only acted on when the process is next scheduled.
func (s *Server) Pause() {
	s.t.Helper()
	pid := s.signal(syscall.SIGSTOP)
	deadline := time.Now().Add(stopTimeout)
	for !stopped(pid) {
		if time.Now().After(deadline) {
			s.t.Fatalf("testserver: %s (pid %d) not stopped %v after SIGSTOP", s.Addr, pid, stopTimeout)
		}
		time.Sleep(time.Millisecond) // nothing to wait on: the kernel sends no event
	}
}

// Resume continues a paused server with SIGCONT.
func (s *Server) Resume() {
	s.t.Helper()
	s.signal(syscall.SIGCONT)
}

func (s *Server) signal(sig syscall.Signal) int {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		s.t.Fatalf("testserver: %v to %s, which is not running", sig, s.Addr)
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("testserver: %v to %s: %v", sig, s.Addr, err)
	}
	return s.cmd.Process.Pid
}

// stopped reports whether every thread of pid is in the stopped state
// ("T" in /proc/<pid>/task/<tid>/stat, the field after the command name).
func stopped(pid int) bool {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
		if err != nil {
			return false
		}
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 || i+2 >= len(b) || b[i+2] != 'T' {
			return false
		}
	}
	return true
}

// Running reports whether the process is up (it may not be answering yet).
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

func (s *Server) logTail() string {
	b, err := os.ReadFile(s.log)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	const max = 4096
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

func containsAddrInUse(log string) bool {
	return strings.Contains(strings.ToLower(log), "address already in use")
}

// launch runs build with fresh ports until the server starts, retrying a
// few times when a reserved port was taken by someone else meanwhile.
func launch(t testing.TB, build func(ports []int) *Server, nports int) *Server {
	t.Helper()
	var err error
	for range 3 {
		s := build(freePorts(t, nports))
		s.t = t
		if err = s.start(); err == nil {
			t.Cleanup(s.Stop)
			return s
		}
		if !errors.Is(err, errAddrInUse) {
			break
		}
	}
	t.Fatalf("%v", err)
	return nil
}
