package proto

import (
	"strings"
	"testing"
)

const (
	benchSub      = `{"op":"sub","id":17,"topics":["prices.AAPL","prices.MSFT","alerts.user.42"]}`
	benchPub      = `{"op":"pub","id":18,"topic":"chat.lobby","data":{"user":"ada","text":"hello, world","ts":1700000000123,"tags":["a","b"],"score":4.5}}`
	benchSubSince = `{"op":"sub","id":17,"topics":["prices.AAPL","prices.MSFT","alerts.user.42"],"since":{"prices.AAPL":{"offset":41,"epoch":"a1b2"},"alerts.user.42":{"offset":7,"epoch":"a1b2"}},"last":50}`
	// benchData is a typical small message: what a price ticker publishes.
	benchData = `{"sym":"AAPL","bid":189.42,"ask":189.44,"size":[300,120],"ts":1700000000123,"venue":"XNAS","halted":false}`
)

func benchDecodeRequest(b *testing.B, c Codec, env string) {
	in := inFormat(b, c.Format(), env)
	var r Request
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if err := c.DecodeRequest(in, &r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeRequest_JSON_Sub(b *testing.B)      { benchDecodeRequest(b, JSON, benchSub) }
func BenchmarkDecodeRequest_JSON_Pub(b *testing.B)      { benchDecodeRequest(b, JSON, benchPub) }
func BenchmarkDecodeRequest_Msgpack_Sub(b *testing.B)   { benchDecodeRequest(b, Msgpack, benchSub) }
func BenchmarkDecodeRequest_Msgpack_Pub(b *testing.B)   { benchDecodeRequest(b, Msgpack, benchPub) }
func BenchmarkDecodeRequest_JSON_SubSince(b *testing.B) { benchDecodeRequest(b, JSON, benchSubSince) }
func BenchmarkDecodeRequest_Msgpack_SubSince(b *testing.B) {
	benchDecodeRequest(b, Msgpack, benchSubSince)
}

func benchAppendMessage(b *testing.B, c Codec, data string) {
	d := inFormat(b, c.Format(), data)
	buf := make([]byte, 0, 64+len(d))
	b.ReportAllocs()
	b.SetBytes(int64(len(d)))
	for b.Loop() {
		buf = c.AppendMessage(buf[:0], "prices.AAPL", d)
	}
}

func BenchmarkAppendMessage_JSON_Small(b *testing.B)    { benchAppendMessage(b, JSON, benchData) }
func BenchmarkAppendMessage_JSON_4K(b *testing.B)       { benchAppendMessage(b, JSON, bigData(4096)) }
func BenchmarkAppendMessage_Msgpack_Small(b *testing.B) { benchAppendMessage(b, Msgpack, benchData) }
func BenchmarkAppendMessage_Msgpack_4K(b *testing.B)    { benchAppendMessage(b, Msgpack, bigData(4096)) }

func benchAppendStreamMessage(b *testing.B, c Codec, data, epoch string) {
	d := inFormat(b, c.Format(), data)
	buf := make([]byte, 0, 96+len(d))
	b.ReportAllocs()
	b.SetBytes(int64(len(d)))
	offset := uint64(1 << 20)
	for b.Loop() {
		offset++
		buf = c.AppendStreamMessage(buf[:0], "prices.AAPL", offset, epoch, d)
	}
}

func BenchmarkAppendStreamMessage_JSON_Small(b *testing.B) {
	benchAppendStreamMessage(b, JSON, benchData, "")
}
func BenchmarkAppendStreamMessage_JSON_Epoch(b *testing.B) {
	benchAppendStreamMessage(b, JSON, benchData, "a1b2c3d4")
}
func BenchmarkAppendStreamMessage_JSON_4K(b *testing.B) {
	benchAppendStreamMessage(b, JSON, bigData(4096), "")
}
func BenchmarkAppendStreamMessage_Msgpack_Small(b *testing.B) {
	benchAppendStreamMessage(b, Msgpack, benchData, "")
}
func BenchmarkAppendStreamMessage_Msgpack_Epoch(b *testing.B) {
	benchAppendStreamMessage(b, Msgpack, benchData, "a1b2c3d4")
}
func BenchmarkAppendStreamMessage_Msgpack_4K(b *testing.B) {
	benchAppendStreamMessage(b, Msgpack, bigData(4096), "")
}

// The fan-out path shares one message among many goroutines' queues; the
// parallel case shows encoding does not contend on anything shared.
func BenchmarkAppendMessage_JSON_Parallel(b *testing.B) {
	d := []byte(benchData)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 0, 64+len(d))
		for pb.Next() {
			buf = JSON.AppendMessage(buf[:0], "prices.AAPL", d)
		}
	})
}

func BenchmarkAppendStreamMessage_JSON_Parallel(b *testing.B) {
	d := []byte(benchData)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 0, 96+len(d))
		for offset := uint64(1); pb.Next(); offset++ {
			buf = JSON.AppendStreamMessage(buf[:0], "prices.AAPL", offset, "", d)
		}
	})
}

// bigData is a JSON array of ticker objects about n bytes long.
func bigData(n int) string {
	var s strings.Builder
	s.WriteByte('[')
	for s.Len() < n-len(benchData)-1 {
		if s.Len() > 1 {
			s.WriteByte(',')
		}
		s.WriteString(benchData)
	}
	s.WriteByte(']')
	return s.String()
}

func benchConvert(b *testing.B, data string, from Format) {
	in := inFormat(b, from, data)
	buf := make([]byte, 0, 4*len(in))
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		var err error
		if buf, err = AppendConvert(buf[:0], in, from, other(from)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkConvert_JSONToMsgpack_Small(b *testing.B) { benchConvert(b, benchData, FormatJSON) }
func BenchmarkConvert_JSONToMsgpack_4K(b *testing.B)    { benchConvert(b, bigData(4096), FormatJSON) }
func BenchmarkConvert_MsgpackToJSON_Small(b *testing.B) { benchConvert(b, benchData, FormatMsgpack) }
func BenchmarkConvert_MsgpackToJSON_4K(b *testing.B)    { benchConvert(b, bigData(4096), FormatMsgpack) }

// Convert allocates its result; this is the call the gateway makes.
func BenchmarkConvert_Alloc_JSONToMsgpack_Small(b *testing.B) {
	in := []byte(benchData)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Convert(in, FormatJSON, FormatMsgpack); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkValidData_JSON_4K(b *testing.B) {
	in := []byte(bigData(4096))
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if err := ValidData(in, FormatJSON); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkValidTopic(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if err := ValidTopic("prices.AAPL.bid"); err != nil {
			b.Fatal(err)
		}
	}
}

// Join and leave go to every subscriber of a presence topic, like a msg.
func benchAppendJoin(b *testing.B, c Codec) {
	buf := make([]byte, 0, 128)
	b.ReportAllocs()
	for b.Loop() {
		buf = c.AppendJoin(buf[:0], "chat.lobby", "c1f3a9e07b", "ada@example.com")
	}
}

func BenchmarkAppendJoin_JSON(b *testing.B)    { benchAppendJoin(b, JSON) }
func BenchmarkAppendJoin_Msgpack(b *testing.B) { benchAppendJoin(b, Msgpack) }

func benchAppendPresenceAck(b *testing.B, c Codec, n int) {
	members := make([]Member, n)
	for i := range members {
		members[i] = Member{Client: "c1f3a9e07b", User: "ada@example.com"}
	}
	buf := make([]byte, 0, 64+48*n)
	b.ReportAllocs()
	for b.Loop() {
		buf = c.AppendPresenceAck(buf[:0], 12345, members)
	}
}

func BenchmarkAppendPresenceAck_JSON_100(b *testing.B)    { benchAppendPresenceAck(b, JSON, 100) }
func BenchmarkAppendPresenceAck_Msgpack_100(b *testing.B) { benchAppendPresenceAck(b, Msgpack, 100) }
