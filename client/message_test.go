package client

import (
	"reflect"
	"testing"

	"github.com/subsock/subsock/proto"
)

func TestEncodeDecode(t *testing.T) {
	type tick struct {
		Sym   string  `json:"sym" msgpack:"sym"`
		Price float64 `json:"price" msgpack:"price"`
		Seq   int     `json:"seq" msgpack:"seq"`
	}
	for _, f := range []proto.Format{proto.FormatJSON, proto.FormatMsgpack} {
		t.Run(f.String(), func(t *testing.T) {
			in := tick{"AAPL", 187.25, 42}
			data, err := encodeValue(in, f)
			if err != nil {
				t.Fatal(err)
			}
			if err := proto.ValidData(data, f); err != nil {
				t.Fatalf("encoded value is not one %v value: %v", f, err)
			}
			var out tick
			if err := (Message{Data: data, format: f}).Decode(&out); err != nil {
				t.Fatal(err)
			}
			if out != in {
				t.Fatalf("round trip: %+v, want %+v", out, in)
			}
			raw := Raw(data)
			if got, _ := encodeValue(raw, f); !reflect.DeepEqual(got, data) {
				t.Fatalf("Raw was re-encoded: %x", got)
			}
		})
	}
	if _, err := encodeValue(make(chan int), proto.FormatJSON); err == nil {
		t.Fatal("encoding a channel succeeded")
	}
}
