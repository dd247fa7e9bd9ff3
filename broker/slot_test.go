package broker

import (
	"strings"
	"testing"
)

func TestKeySlot(t *testing.T) {
	tests := []struct {
		key  string
		want uint16
	}{
		// CRC16-XMODEM's check value is 0x31C3 for "123456789"; mod 16384.
		{"123456789", 0x31C3 % numSlots},
		// Examples from the Redis Cluster specification and redis-cli.
		{"foo", 12182},
		{"bar", 5061},
		{"{user1000}.following", 3443},
		{"{user1000}.followers", 3443},
		{"user1000", 3443},
		{"", 0},
		// An empty tag "{}" does not count: the whole key is hashed.
		{"{}x", keySlotNoTag("{}x")},
		// Only the first "{" and the next "}" count.
		{"{a}{b}", keySlotNoTag("a")},
		{"x{}{y}", keySlotNoTag("x{}{y}")},
		{"{only", keySlotNoTag("{only")},
	}
	for _, tt := range tests {
		if got := keySlot(tt.key); got != tt.want {
			t.Errorf("keySlot(%q) = %d, want %d", tt.key, got, tt.want)
		}
	}
}

// keySlotNoTag is the bitwise CRC16-XMODEM, without the table or tags.
func keySlotNoTag(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc % numSlots
}

// FuzzKeySlot: the table matches the bitwise CRC, and a key with a hash
// tag lands where the tag alone does.
func FuzzKeySlot(f *testing.F) {
	for _, s := range []string{"", "a", "{a}b", "{}", "}{", "{{a}}", "x{y}z{w}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := keySlot(s)
		if got >= numSlots {
			t.Fatalf("slot %d out of range", got)
		}
		open := strings.IndexByte(s, '{')
		end := -1
		if open >= 0 {
			end = strings.IndexByte(s[open+1:], '}')
		}
		if open < 0 || end <= 0 {
			if want := keySlotNoTag(s); got != want {
				t.Fatalf("keySlot(%q) = %d, bitwise CRC says %d", s, got, want)
			}
			return
		}
		tag := s[open+1 : open+1+end]
		if want := keySlotNoTag(tag); got != want {
			t.Fatalf("keySlot(%q) = %d, its tag %q hashes to %d", s, got, tag, want)
		}
	})
}

func BenchmarkKeySlot(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		keySlot("chat.room.12345.messages")
	}
}
