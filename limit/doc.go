// Package limit holds the gateway's admission control: a cap on open
// connections and on the rate of new ones (Admission), and the
// per-connection publish token bucket.
//
// Rules:
//   - Admission is safe for concurrent use; Admit and Done allocate nothing
//     and hold a lock only around the rate bucket.
//   - Every Admit that returned ok must be paired with exactly one Done.
//   - A publish limiter belongs to one connection; a nil one allows
//     everything (use Allow).
//   - The package starts no goroutines and logs nothing.
package limit
