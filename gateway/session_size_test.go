package gateway

import (
	"testing"
	"unsafe"
)

// An idle connection's cost is mostly netpoll's and the session's: the
// session must stay in the runtime's 288-byte size class (the next one is
// 320), or every idle connection pays 32 bytes more (make bench idle).
func TestSessionSizeClass(t *testing.T) {
	if n := unsafe.Sizeof(session{}); n > 288 {
		t.Fatalf("session is %d bytes: past the 288-byte size class", n)
	}
}
