package ghost

import (
	"encoding/binary"
	"errors"
)

// keyVersion is a key, its hash (on the sender's side), and a version of
// its pair: what a near holder renews (nearrenew.go) and what a primary
// commits on its copies (commit.go).
type keyVersion struct {
	h       uint64
	key     string
	version uint64
}

// keyVersionBatch bounds the keys of one list.
const keyVersionBatch = 512

// appendKeyVersions encodes a list of keys with a version each, and the
// address of the node that sends it (a near holder renewing its leases, a
// primary committing its writes).
func appendKeyVersions(b []byte, from string, keys []keyVersion) []byte {
	b = binary.AppendUvarint(b, uint64(len(from)))
	b = append(b, from...)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, r := range keys {
		b = binary.AppendUvarint(b, uint64(len(r.key)))
		b = append(b, r.key...)
		b = binary.AppendUvarint(b, r.version)
	}
	return b
}

var errBadKeyVersions = errors.New("ghost: malformed list of keys and versions")

// decodeKeyVersions reads what appendKeyVersions wrote; keys are checked
// as any key is.
func decodeKeyVersions(b []byte) (from string, keys []keyVersion, err error) {
	str := func() (string, bool) {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) || l > 1024 {
			return "", false
		}
		s := string(b[k : k+int(l)])
		b = b[k+int(l):]
		return s, true
	}
	var ok bool
	if from, ok = str(); !ok {
		return "", nil, errBadKeyVersions
	}
	count, k := binary.Uvarint(b)
	if k <= 0 || count > keyVersionBatch {
		return "", nil, errBadKeyVersions
	}
	b = b[k:]
	keys = make([]keyVersion, 0, count)
	for range count {
		key, ok := str()
		if !ok || checkKey(key) != nil {
			return "", nil, errBadKeyVersions
		}
		v, k := binary.Uvarint(b)
		if k <= 0 {
			return "", nil, errBadKeyVersions
		}
		b = b[k:]
		keys = append(keys, keyVersion{key: key, version: v})
	}
	if len(b) != 0 {
		return "", nil, errBadKeyVersions
	}
	return from, keys, nil
}
