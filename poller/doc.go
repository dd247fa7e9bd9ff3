// Package poller drives every socket of a node from a fixed pool of
// cloudwego/netpoll event loops and owns the outbound path.
//
// Rules, each learnt from measurements recorded in NETPOLL-NOTES.md:
//
//   - Reads: Handler.OnData runs on netpoll's handler pool, one call at a
//     time per connection. It must consume everything the Reader holds
//     before returning (keeping any partial input itself); netpoll calls it
//     again at once while unread bytes remain, which would spin a core.
//     It must not block for long: the pool grows a goroutine per blocked
//     call.
//   - Writes never go through netpoll's Writer: its Flush blocks the
//     caller on a full socket and its output buffer keeps a 4 KiB node per
//     connection. Conn.Enqueue appends shared, immutable byte slices to a
//     bounded per-connection queue and returns at once; a small pool of
//     writer goroutines joins everything queued for a connection into one
//     writev. A socket that would block is parked in an epoll set of our
//     own and resumed when writable, so one slow peer never delays others.
//   - Every close goes through the connection's writer goroutine, and the
//     writer holds Conn.wmu around each write syscall; netpoll's close
//     callback takes wmu before the descriptor is closed, so a descriptor
//     number reused by a new connection is never written by mistake.
//   - Abort resets the socket (SO_LINGER 0) after its best-effort final
//     bytes: every abort is for a peer that is slow, silent or hostile, and
//     a plain close would leave its unsent bytes in an orphaned socket.
//   - A writer's pass over its ready list is interrupted, between two
//     writes, for urgent connections (SetUrgent) and prompt pushes
//     (EnqueuePrompt: replies, small groups' messages); lagging peers
//     (a shut window) come after the pass.
//   - netpoll closes a connection when the peer half-closes. A connection
//     marked urgent (HTTP) gets one non-blocking write of its queue in the
//     close callback, so a request followed by FIN still gets its reply.
//   - Handler.OnClose runs exactly once per connection, on whichever
//     goroutine closed it (a writer, netpoll's poller or handler pool). It
//     must not call back into the closing Conn's locks and must be quick.
//
// Lock order: Conn.wmu before Conn.mu; writer.mu and epoll.mu are leaves.
package poller
