package ghost

import (
	"slices"
	"testing"
)

// A list of keys and versions decodes to what was encoded, and garbage is refused
// without a panic.
func FuzzDecodeKeyVersions(f *testing.F) {
	f.Add(appendKeyVersions(nil, "10.0.0.1:7991", []keyVersion{{key: "a", version: 1}, {key: "price:AMZN", version: 1 << 60}}))
	f.Add(appendKeyVersions(nil, "", nil))
	f.Add([]byte{0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		holder, keys, err := decodeKeyVersions(b)
		if err != nil {
			return
		}
		// Varints may be longer than they need be: compare what they say.
		holder2, keys2, err := decodeKeyVersions(appendKeyVersions(nil, holder, keys))
		if err != nil || holder2 != holder || !slices.Equal(keys2, keys) {
			t.Fatalf("%x decodes to %q %v, which does not decode back (%q %v, %v)", b, holder, keys, holder2, keys2, err)
		}
	})
}
