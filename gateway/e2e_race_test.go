//go:build race

package gateway_test

// raceEnabled makes the binary under test a -race build too, so building
// it reuses the packages compiled for this test binary.
const raceEnabled = true
