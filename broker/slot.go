package broker

import "strings"

// numSlots is the size of Redis Cluster's key space.
const numSlots = 16384

// keySlot is the Redis Cluster hash slot of a key or shard channel:
// CRC16-XMODEM of the key, or of its hash tag (the part between the first
// '{' and the next '}', if that part is not empty), mod 16384.
// https://redis.io/docs/reference/cluster-spec/#key-distribution-model
func keySlot(key string) uint16 {
	if open := strings.IndexByte(key, '{'); open >= 0 {
		if end := strings.IndexByte(key[open+1:], '}'); end > 0 {
			key = key[open+1 : open+1+end]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc = crc<<8 ^ crc16tab[byte(crc>>8)^key[i]]
	}
	return crc % numSlots
}

// crc16tab is the CRC16-XMODEM table (polynomial 0x1021).
var crc16tab = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i) << 8
		for range 8 {
			if c&0x8000 != 0 {
				c = c<<1 ^ 0x1021
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()
