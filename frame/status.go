package frame

import "github.com/gobwas/ws"

// Status codes subsock sends beyond the ones gobwas/ws names. Codes in the
// 4000–4999 range are private use (RFC 6455 section 7.4.2); they are listed
// in docs/protocol.md.
const (
	// StatusTryAgainLater (1013) closes a slow consumer: its outbound queue
	// overflowed, so reconnecting later is the remedy.
	StatusTryAgainLater ws.StatusCode = 1013
	// StatusHeartbeatTimeout closes a peer that stayed silent past the ping timeout.
	StatusHeartbeatTimeout ws.StatusCode = 4000
	// StatusTokenExpired closes a connection whose token expired without refresh.
	StatusTokenExpired ws.StatusCode = 4001
	// StatusDisconnected closes a connection a backend asked to end
	// (POST /api/disconnect): do not reconnect unchanged.
	StatusDisconnected ws.StatusCode = 4003
	// StatusTryLater refuses a connection for now (admission limits, a
	// draining node); the reason says how long to wait.
	StatusTryLater ws.StatusCode = 4013
)

// ValidCloseCode reports whether a peer may send code in a close frame
// (RFC 6455 section 7.4): 1000–1003, 1007–1011 (and 1012–1014, registered
// later with IANA), and 3000–4999. 1004–1006 and 1015 must never be sent.
func ValidCloseCode(code ws.StatusCode) bool {
	switch {
	case code >= 1000 && code <= 1003:
		return true
	case code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}
