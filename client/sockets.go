package client

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
)

// SocketConfig declares one micro socket for Open. Every setting applies to
// that socket alone. URL is SocketConfig's own field (Dial takes it as an
// argument); the rest are the embedded Options, each documented there with
// its default, and Dial fills those defaults in. Options' fields read as
// sc.Policy, but a composite literal names the embedded struct:
//
//	client.SocketConfig{URL: u, Options: client.Options{Policy: client.Latest}}
type SocketConfig struct {
	// URL is the node's WebSocket endpoint, e.g. "ws://host:8080/ws".
	URL string
	Options
}

// Sockets is a set of named micro sockets, each its own Conn: its own
// connection, token, backoff and delivery policy, so one failing or slow
// socket never stalls another.
type Sockets struct {
	names []string
	conns map[string]*Conn
}

// Open dials every declared socket concurrently. If any cannot connect
// (see Dial), the others are closed and the error names the socket.
func Open(ctx context.Context, decl map[string]SocketConfig) (*Sockets, error) {
	if len(decl) == 0 {
		return nil, ErrNoSockets
	}
	ss := &Sockets{conns: make(map[string]*Conn, len(decl))}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for name, sc := range decl {
		ss.names = append(ss.names, name)
		wg.Go(func() {
			c, err := Dial(ctx, sc.URL, sc.Options)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("client: socket %q: %w", name, err))
				return
			}
			ss.conns[name] = c
		})
	}
	wg.Wait()
	sort.Strings(ss.names)
	if len(errs) > 0 {
		_ = ss.Close()
		return nil, errors.Join(errs...)
	}
	return ss, nil
}

// Get returns the socket declared as name. It panics for a name that was
// not declared, which is a programming error; see Lookup.
func (ss *Sockets) Get(name string) *Conn {
	c, ok := ss.conns[name]
	if !ok {
		panic(fmt.Sprintf("client: no socket named %q (declared: %v)", name, ss.names))
	}
	return c
}

// Lookup returns the socket declared as name, if any.
func (ss *Sockets) Lookup(name string) (*Conn, bool) {
	c, ok := ss.conns[name]
	return c, ok
}

// Names returns the declared names, sorted.
func (ss *Sockets) Names() []string { return append([]string(nil), ss.names...) }

// Stats returns each socket's figures by name.
func (ss *Sockets) Stats() map[string]Stats {
	m := make(map[string]Stats, len(ss.conns))
	for name, c := range ss.conns {
		m[name] = c.Stats()
	}
	return m
}

// Close closes every socket concurrently and waits for all of them.
func (ss *Sockets) Close() error {
	var wg sync.WaitGroup
	for _, c := range ss.conns {
		wg.Go(func() { _ = c.Close() })
	}
	wg.Wait()
	return nil
}
