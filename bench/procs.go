package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// workerProc is the parent's handle on one worker process. Commands are
// sequential (call holds mu until the reply arrives); a reader goroutine
// splits the worker's stdout into progress lines and replies.
type workerProc struct {
	index    int
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	mu       sync.Mutex // one command at a time
	replies  chan *workerReply
	progress atomic.Pointer[workerStats]
	readDone chan struct{} // closed when stdout ends
	exited   chan struct{} // closed when the process has been waited for
	waitErr  error
}

// startWorker starts argv as worker index with extra environment env.
func startWorker(index int, argv, env []string, stderr io.Writer) (*workerProc, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = stderr
	// A worker must never outlive the parent, even after a crash.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: start: %v", ErrWorker, err)
	}
	p := &workerProc{
		index:    index,
		cmd:      cmd,
		stdin:    stdin,
		replies:  make(chan *workerReply, 1),
		readDone: make(chan struct{}),
		exited:   make(chan struct{}),
	}
	go p.read(stdout)
	go func() {
		<-p.readDone
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

func (p *workerProc) read(stdout io.Reader) {
	defer close(p.readDone)
	dec := json.NewDecoder(stdout)
	for {
		r := new(workerReply)
		if err := dec.Decode(r); err != nil {
			return
		}
		if r.Type == replyProgress {
			p.progress.Store(r.Stats)
			continue
		}
		select {
		case p.replies <- r:
		default:
			// A reply nobody asked for: the protocol is broken; stop reading
			// so the next call fails instead of pairing answers wrongly.
			return
		}
	}
}

// call sends c and waits for its reply.
func (p *workerProc) call(ctx context.Context, c command) (*workerReply, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	if _, err := p.stdin.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("%w: worker %d: %s: %v", ErrWorker, p.index, c.Cmd, err)
	}
	select {
	case r := <-p.replies:
		if r.Type == "error" {
			return nil, fmt.Errorf("%w: worker %d: %s: %s", ErrWorker, p.index, c.Cmd, r.Err)
		}
		if r.Type != c.Cmd {
			return nil, fmt.Errorf("%w: worker %d answered %q to %q", ErrWorker, p.index, r.Type, c.Cmd)
		}
		if r.Stats != nil {
			p.progress.Store(r.Stats)
		}
		return r, nil
	case <-p.readDone:
		return nil, fmt.Errorf("%w: worker %d exited during %s", ErrWorker, p.index, c.Cmd)
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: worker %d: %s: %v", ErrWorker, p.index, c.Cmd, ctx.Err())
	}
}

// stop closes stdin (the worker closes its connections and exits) and kills
// the process if it has not exited within grace.
func (p *workerProc) stop(grace time.Duration) {
	_ = p.stdin.Close()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.exited:
	case <-t.C:
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// fleet is every worker of a run.
type fleet []*workerProc

// each runs f for every worker in parallel and returns the replies in
// worker order, or the first error.
func (f fleet) each(ctx context.Context, mk func(i int) command) ([]*workerReply, error) {
	out := make([]*workerReply, len(f))
	errs := make([]error, len(f))
	var wg sync.WaitGroup
	for i, p := range f {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = p.call(ctx, mk(i))
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// all sends the same command to every worker.
func (f fleet) all(ctx context.Context, c command) ([]*workerReply, error) {
	return f.each(ctx, func(int) command { return c })
}

// stats sums the replies' counters.
func sumStats(reps []*workerReply) *workerStats {
	st := &workerStats{}
	for _, r := range reps {
		if r != nil && r.Stats != nil {
			st.add(r.Stats)
		}
	}
	return st
}

// progress sums the latest counters every worker has reported.
func (f fleet) progress() *workerStats {
	st := &workerStats{}
	for _, p := range f {
		if s := p.progress.Load(); s != nil {
			st.add(s)
		}
	}
	return st
}

// cpu sums the workers' CPU seconds (those still running).
func (f fleet) cpu(pr *probe) float64 {
	var s float64
	for _, p := range f {
		if v, err := pr.procCPU(p.cmd.Process.Pid); err == nil {
			s += v
		}
	}
	return s
}

func (f fleet) stop(grace time.Duration) {
	var wg sync.WaitGroup
	for _, p := range f {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.stop(grace)
		}()
	}
	wg.Wait()
}
