package hub

import (
	"encoding/binary"

	"github.com/subsock/subsock/proto"
)

// A relay payload is what crosses the broker: one format byte, then the
// data exactly as the publisher sent it. Each node converts it at most once
// per codec in use. AppendRelay appends it to dst.
func AppendRelay(dst []byte, f proto.Format, data []byte) []byte {
	return append(append(dst, byte(f)), data...)
}

// relayNoEcho marks the format byte of a pub sent with "echo":false: the
// publishing connection (its node's id, then its client number) follows,
// and is left out of the delivery.
const relayNoEcho = 0x40

// AppendRelayNoEcho is AppendRelay for a pub whose own connection (cid on
// node) must not get it.
func AppendRelayNoEcho(dst []byte, f proto.Format, node string, cid uint64, data []byte) []byte {
	dst = append(dst, byte(f)|relayNoEcho, byte(len(node)))
	dst = append(dst, node...)
	dst = binary.BigEndian.AppendUint64(dst, cid)
	return append(dst, data...)
}

// SplitRelay reads a relay payload: its format and data, and the client
// number of the connection to leave out when it is one of node self's
// (0: none). ok is false for a payload too short to be one.
func SplitRelay(relay []byte, self string) (f proto.Format, data []byte, skip uint64, ok bool) {
	if len(relay) == 0 {
		return 0, nil, 0, false
	}
	f = proto.Format(relay[0] &^ relayNoEcho)
	if relay[0]&relayNoEcho == 0 {
		return f, relay[1:], 0, true
	}
	if len(relay) < 2 || len(relay) < 2+int(relay[1])+8 {
		return 0, nil, 0, false
	}
	node := relay[2 : 2+int(relay[1])]
	cid := binary.BigEndian.Uint64(relay[2+len(node):])
	if string(node) == self {
		skip = cid
	}
	return f, relay[2+len(node)+8:], skip, true
}
