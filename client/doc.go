// Package client is the Go SDK for subsock: it keeps WebSocket connections
// to a node open, subscribes topics with a handler each, publishes, and
// comes back by itself after a failure, resubscribing every topic.
//
// A program opens several small single-purpose connections ("micro
// sockets") rather than one shared pipe: one for prices, one for risk
// alerts, one for payment notifications, each with its own token, retry
// and delivery policy, so a failure or a slow handler in one never touches
// the others. Dial opens one; Open opens a named set declared in one place.
//
// Reconnection uses exponential backoff with full jitter (a uniformly
// random wait below min(Max, Min·2^n)), so a thousand clients dropped at
// once come back spread over time. Server hints lengthen the wait: a close
// with 1001 (going away), 1012 (restart) or 1013 (try again later) is never
// followed by an immediate reconnect, and an HTTP 503 refusal with
// Retry-After is honoured as a lower bound. A refusal of the client's
// credentials, 401 (ErrUnauthorized) or 403 (ErrForbidden), is not retried
// as is: the Conn dials again only once Options.Token gives another token,
// and stops otherwise, so a bad token does not turn into a retry storm.
//
// On a topic the node keeps history for, every message has an offset, and
// the Conn keeps its position: it resubscribes from it after a reconnect,
// drops duplicates, recovers a gap on the same connection, and reports
// each recovery to Options.OnRecover (see Recovery).
//
// The node knows each connection by a client id and its token's user
// (Conn.Info). On topics with presence, Conn.Presence and PresenceStats
// say who is subscribed across the cluster, and SubscribeOptions.OnJoin
// and OnLeave report the other members as they come and go. A publish
// with PublishOptions.NoEcho reaches every subscriber but the Conn
// itself. A backend can act on clients through the server: a subscription
// it removes is dropped and reported (UnsubscribedError), and a client it
// disconnects (close code 4003) stops for good instead of reconnecting
// (ErrDisconnected, Conn.Done).
//
// Goroutines, per Conn, all stopped by Close:
//   - one supervisor that dials, resubscribes, recovers history gaps,
//     sends the app-level pings, ends a connection whose writes stall, and
//     backs off between connections;
//   - one reader per live connection, which decodes frames, completes
//     requests waiting for their ack and queues messages; it never runs a
//     handler and never blocks on one;
//   - one handler goroutine that runs every Handler of the Conn, one call
//     at a time, in arrival order (policy All) or newest-value-first per
//     topic (policy Latest).
//
// Callback rules: a Handler may call any method of its Conn except Close
// (Close waits for the handler goroutine). OnError, OnConnect,
// OnDisconnect, OnRecover, OnJoin and OnLeave must return quickly and be
// safe for concurrent use: OnError, OnRecover, OnJoin and OnLeave are
// called from the reader (OnError also from the supervisor), and blocking
// there delays reads (and, in the end, gets the connection closed as a
// slow consumer).
//
// The package keeps no global state and logs only to the *zap.Logger given
// in Options.
package client
