// Package testserver starts real backbone servers (Redis, a Redis Cluster,
// NATS) for tests in any package of this module.
//
// Every helper takes a testing.TB and must be called from the test's own
// goroutine, because it fails the test (t.Fatalf) when a server cannot be
// started. Servers listen on free loopback ports, keep their data in
// t.TempDir() and are stopped by t.Cleanup. Readiness is awaited by asking
// the server itself, never by sleeping. A missing binary is a test failure,
// not a skip: scripts/install-deps.sh installs what is needed.
//
// The processes are started with a parent-death signal, so a test binary
// that crashes does not leave servers behind.
package testserver
