package ghost

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// Values: Item, and decoding an encoded value without a Go type to guide
// it.

// Item is a pair read from the cache.
type Item struct {
	Key string
	// Value is the value decoded without a Go type to guide it: integers
	// come back as int64 (or uint64 past its range), floats as float64,
	// maps as map[string]any, arrays as []any, structs as maps of their
	// fields, times as time.Time in the local zone. Use Decode for a typed
	// value.
	Value any
	raw   []byte
}

// Decode decodes the value into dst, a pointer to any type msgpack can
// decode into: a struct, slice, map, string, number, time.Time...
func (it Item) Decode(dst any) error {
	return msgpack.Unmarshal(it.raw, dst)
}

// decodeValue decodes an encoded value without a Go type to guide it:
// integers become int64 (uint64 past int64's range), floats float64, binary
// []byte, arrays []any, maps with string keys map[string]any (other maps
// map[any]any).
//
// raw is checked first: a malformed value, or one nested deeper than
// MaxValueDepth, is an error, and decoding allocates in proportion to
// len(raw) whatever lengths raw claims.
func decodeValue(raw []byte) (any, error) {
	if err := checkValue(raw); err != nil {
		return nil, err
	}
	vd := valueDecoders.Get().(*valueDecoder)
	defer valueDecoders.Put(vd)
	vd.r.Reset(raw)
	vd.dec.ResetReader(&vd.r)
	return decodeAny(vd.dec)
}

type valueDecoder struct {
	r   bytes.Reader
	dec *msgpack.Decoder
}

// valueDecoders recycles decoders: a msgpack.Decoder is large, and a Get
// needs one only for the moment it decodes.
var valueDecoders = sync.Pool{New: func() any { return &valueDecoder{dec: msgpack.NewDecoder(nil)} }}

func decodeAny(d *msgpack.Decoder) (any, error) {
	c, err := d.PeekCode()
	if err != nil {
		return nil, err
	}
	switch {
	case msgpcode.IsFixedArray(c), c == msgpcode.Array16, c == msgpcode.Array32:
		n, err := d.DecodeArrayLen()
		if err != nil || n < 0 {
			return nil, err
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = decodeAny(d); err != nil {
				return nil, err
			}
		}
		return out, nil
	case msgpcode.IsFixedMap(c), c == msgpcode.Map16, c == msgpcode.Map32:
		return decodeAnyMap(d)
	case c == msgpcode.Uint8, c == msgpcode.Uint16, c == msgpcode.Uint32, c == msgpcode.Uint64:
		u, err := d.DecodeUint64()
		if err != nil || u > math.MaxInt64 {
			return u, err
		}
		return int64(u), nil
	case c == msgpcode.Bin8, c == msgpcode.Bin16, c == msgpcode.Bin32:
		return d.DecodeBytes()
	}
	return d.DecodeInterfaceLoose()
}

func decodeAnyMap(d *msgpack.Decoder) (any, error) {
	n, err := d.DecodeMapLen()
	if err != nil || n < 0 {
		return nil, err
	}
	keys, vals := make([]any, n), make([]any, n)
	strKeys := true
	for i := range n {
		if keys[i], err = decodeAny(d); err != nil {
			return nil, err
		}
		if vals[i], err = decodeAny(d); err != nil {
			return nil, err
		}
		_, isStr := keys[i].(string)
		strKeys = strKeys && isStr
	}
	if strKeys {
		m := make(map[string]any, n)
		for i, k := range keys {
			m[k.(string)] = vals[i]
		}
		return m, nil
	}
	m := make(map[any]any, n)
	for i, k := range keys {
		if k != nil && !reflect.TypeOf(k).Comparable() {
			return nil, fmt.Errorf("map key of type %T cannot be a Go map key", k)
		}
		m[k] = vals[i]
	}
	return m, nil
}

// refuseValue is the owner's answer to a Put or Add whose value failed
// checkValue.
func refuseValue(id uint64, err error) response {
	if errors.Is(err, ErrValueTooDeep) {
		return response{id: id, status: statusTooDeep, msg: err.Error()}
	}
	return response{id: id, status: statusBadValue, msg: err.Error()}
}
