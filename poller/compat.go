package poller

import (
	"bytes"
	"runtime/debug"
	"sync"

	"go.uber.org/zap"
)

const netpollModule = "github.com/cloudwego/netpoll"

// verifiedNetpoll lists the netpoll versions whose internals the two
// workarounds below were checked against: the write-scratch trim (trim.go
// finds a private field by name) and the listener's stop contract
// (netpoll ends its accept loop on an error whose text says "closed").
// Another version may have moved either, so it runs without the trim, and
// says so once.
var verifiedNetpoll = map[string]bool{"v0.7.2": true}

// netpollVersion is the netpoll version linked in, "" if unknown.
var netpollVersion = sync.OnceValue(func() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, m := range bi.Deps {
		if m.Path == netpollModule {
			if m.Replace != nil {
				return m.Replace.Version
			}
			return m.Version
		}
	}
	return ""
})

// netpollVerified reports whether the linked netpoll is one of
// verifiedNetpoll. A binary without a dependency list (go test builds
// carry none) relies on trim.go's structural check alone; the tests check
// go.mod's netpoll against the list instead.
func netpollVerified() bool {
	v := netpollVersion()
	return v == "" || verifiedNetpoll[v]
}

// zapWriter turns netpoll's log lines into zap entries, so its few
// messages follow the node's log format (JSON lines stay JSON).
type zapWriter struct{ log *zap.Logger }

func (w zapWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		// netpoll's logger prefixes "2006/01/02 15:04:05 "; zap stamps its own.
		if len(line) > 20 && line[4] == '/' && line[7] == '/' && line[13] == ':' {
			line = line[20:]
		}
		if len(line) > 0 {
			w.log.Warn(string(line))
		}
	}
	return len(p), nil
}
