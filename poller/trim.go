package poller

import (
	"reflect"
	"sync"
	"unsafe"

	"github.com/cloudwego/netpoll"
)

// netpoll gives every connection a write scratch of 32 iovecs and 32 slice
// headers (~1.2 KiB, its "outputBarrier") that only its own Flush uses.
// subsock never writes through netpoll, so the scratch is dropped at
// accept: it is the largest single cost of an idle connection. netpoll
// hands it back to a sync.Pool on close, where a nil is ignored. The field
// is found by reflection once, and only in a netpoll version listed in
// compat.go; with another one trimming is off (one warning at start) and
// TestTrimWriteScratch fails.
var (
	barrierOnce   sync.Once
	barrierOffset uintptr // 0: not found, trimming off
)

func findBarrier(t reflect.Type) {
	if t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return
	}
	f, ok := t.Elem().FieldByName("outputBarrier")
	if !ok || f.Type.Kind() != reflect.Pointer {
		return
	}
	barrierOffset = f.Offset
}

// trimWriteScratch drops nc's unused write scratch; it reports whether it did.
// It must run before nc is shared with other goroutines (in OnPrepare).
func trimWriteScratch(nc netpoll.Connection) bool {
	v := reflect.ValueOf(nc)
	barrierOnce.Do(func() {
		if netpollVerified() {
			findBarrier(v.Type())
		}
	})
	if barrierOffset == 0 || v.Kind() != reflect.Pointer {
		return false
	}
	p := (*unsafe.Pointer)(unsafe.Add(v.UnsafePointer(), barrierOffset))
	*p = nil
	return true
}
