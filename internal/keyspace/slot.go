package keyspace

import (
	"strconv"
	"strings"
)

// sameSlotKey returns a key named after key and suffix that a Redis Cluster
// keeps on key's slot, so that one script can use both.
//
// A key with a hash tag ("{...}", non-empty) keeps it with anything
// appended. A key without one is hashed whole, so "{key}suffix" has its
// slot, unless key holds a "}", which would end that tag early: then key,
// suffix and a number are hashed whole too, and the first number that
// lands on key's slot is taken.
func sameSlotKey(key, suffix string) string {
	switch {
	case hashedPart(key) != key:
		return key + suffix
	case !strings.Contains(key, "}"):
		return "{" + key + "}" + suffix
	}
	slot := keySlot(key)
	for n := 0; ; n++ {
		if k := key + suffix + ":" + strconv.Itoa(n); keySlot(k) == slot {
			return k
		}
	}
}

// hashedPart is the part of key that a Redis Cluster hashes: the content of
// its first "{...}" if that is not empty, else the whole key.
func hashedPart(key string) string {
	if open := strings.IndexByte(key, '{'); open >= 0 {
		if n := strings.IndexByte(key[open+1:], '}'); n > 0 {
			return key[open+1 : open+1+n]
		}
	}
	return key
}

// keySlot is key's Redis Cluster slot: CRC16 (XMODEM) of its hashed part,
// modulo 16384.
func keySlot(key string) uint16 {
	s := hashedPart(key)
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
	return crc & 16383
}
