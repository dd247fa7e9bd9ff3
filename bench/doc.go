// Package bench is the load harness behind cmd/subsock-bench: it drives one
// or more subsock nodes over loopback with many light WebSocket (or SSE)
// clients and reports what connections, subscriptions and broadcasts cost.
//
// Processes: the parent (Run) plans a scenario, optionally spawns the node,
// and re-executes itself as worker processes (RunWorker). Each worker holds
// at most MaxConnsPerWorker sockets, dials from its own source address
// 127.0.0.(2+i) so ephemeral ports never run out, and answers the parent's
// commands on stdin with JSON lines on stdout. Histograms travel encoded
// (HdrHistogram V2, base64) and are merged by the parent.
//
// Goroutines: a worker owns one goroutine per open connection (its reader,
// which also performs every write on that connection and, in the recover
// scenario, redials it after a cut), a bounded pool of
// dialers during a connect phase, and its command loop. The parent owns one
// reader per worker pipe, the publisher pool, and a sampler — and, for
// joinstorm, the canary: a one-connection worker run in-process, whose
// reader is its own goroutine; Run stops them all before it returns.
//
// Latency is receive time minus the publish time carried in each payload;
// the publish time is the time the pacer intended to send, so a stalled
// publisher shows up as latency rather than hiding it (no coordinated
// omission).
package bench
