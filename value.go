package ghost

import (
	"bytes"
	"context"
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
	return decodeInto(it.raw, dst)
}

// GetAs returns the value stored under key on n, decoded into a T (as
// Item.Decode decodes), or ErrCacheMiss. It decodes straight from the
// stored bytes, without the untyped Value a Get builds.
func GetAs[T any](ctx context.Context, n *Node, key string) (T, error) {
	var v T
	raw, err := n.read(ctx, key)
	if err != nil {
		return v, err
	}
	if decodeText(raw, &v) {
		return v, nil
	}
	dst := new(T) // only here does the value escape, to msgpack
	if err := decodeInto(raw, dst); err != nil {
		return v, fmt.Errorf("ghost: decode value of %q into %T: %w", key, v, err)
	}
	return *dst, nil
}

// decodeText decodes a string or binary value into dst when it points to
// a string or a []byte, with one allocation: the copy returned.
func decodeText[T any](raw []byte, dst *T) bool {
	switch d := any(dst).(type) {
	case *string:
		if p, ok := stringOrBinary(raw); ok {
			*d = string(p)
			return true
		}
	case *[]byte:
		if p, ok := stringOrBinary(raw); ok {
			*d = bytes.Clone(p)
			return true
		}
	}
	return false
}

// stringOrBinary returns the bytes of raw when it is one msgpack string or
// binary, as a view.
func stringOrBinary(raw []byte) ([]byte, bool) {
	if len(raw) == 0 || !isString(raw[0]) && !isBinary(raw[0]) {
		return nil, false
	}
	r := msgReader{b: raw}
	p, err := r.raw()
	return p, err == nil && r.left() == 0
}

func isString(c byte) bool {
	return msgpcode.IsFixedString(c) || c == msgpcode.Str8 || c == msgpcode.Str16 || c == msgpcode.Str32
}

func isBinary(c byte) bool { return c == msgpcode.Bin8 || c == msgpcode.Bin16 || c == msgpcode.Bin32 }

// decodeInto decodes raw into dst: strings, byte slices, integers, floats
// and booleans stored as such here, everything else by msgpack.
func decodeInto(raw []byte, dst any) error {
	switch d := dst.(type) {
	case *string:
		if decodeText(raw, d) {
			return nil
		}
	case *[]byte:
		if decodeText(raw, d) {
			return nil
		}
	}
	if v, ok := decodeScalar(raw); ok {
		switch d := dst.(type) {
		case *int64:
			if x, ok := v.(int64); ok {
				*d = x
				return nil
			}
		case *int:
			if x, ok := v.(int64); ok && int64(int(x)) == x {
				*d = int(x)
				return nil
			}
		case *float64:
			if x, ok := v.(float64); ok {
				*d = x
				return nil
			}
		case *bool:
			if x, ok := v.(bool); ok {
				*d = x
				return nil
			}
		}
	}
	return msgpack.Unmarshal(raw, dst)
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
	if v, ok := decodeScalar(raw); ok {
		return v, nil
	}
	if err := checkValue(raw); err != nil {
		return nil, err
	}
	vd := valueDecoders.Get().(*valueDecoder)
	defer valueDecoders.Put(vd)
	vd.r.Reset(raw)
	vd.dec.ResetReader(&vd.r)
	return decodeAny(vd.dec)
}

// decodeOwnedValue is decodeValue for raw that no one else holds: a
// binary value is returned as a view of it, not a copy.
func decodeOwnedValue(raw []byte) (any, error) {
	if len(raw) > 0 && isBinary(raw[0]) {
		if p, ok := stringOrBinary(raw); ok {
			return p, nil
		}
	}
	return decodeValue(raw)
}

// decodeScalar decodes raw when it is one nil, boolean, number, string or
// binary, as decodeAny would, without a msgpack.Decoder; ok is false for
// anything else, malformed values included.
func decodeScalar(raw []byte) (v any, ok bool) {
	if len(raw) == 0 {
		return nil, false
	}
	r := msgReader{b: raw}
	c := raw[0]
	var err error
	switch {
	case c <= msgpcode.PosFixedNumHigh:
		v, r.off = int64(c), 1
	case c >= msgpcode.NegFixedNumLow:
		v, r.off = int64(int8(c)), 1
	case c == msgpcode.Nil:
		v, r.off = nil, 1
	case c == msgpcode.False, c == msgpcode.True:
		v, r.off = c == msgpcode.True, 1
	case c == msgpcode.Float:
		r.off = 1
		var u uint64
		u, err = r.uintN(4)
		v = float64(math.Float32frombits(uint32(u)))
	case c == msgpcode.Double:
		r.off = 1
		var u uint64
		u, err = r.uintN(8)
		v = math.Float64frombits(u)
	case c == msgpcode.Uint8, c == msgpcode.Uint16, c == msgpcode.Uint32, c == msgpcode.Uint64,
		c == msgpcode.Int8, c == msgpcode.Int16, c == msgpcode.Int32, c == msgpcode.Int64:
		if c >= msgpcode.Int8 {
			var i int64
			i, err = r.int()
			v = i
		} else if u, e := r.uint(math.MaxUint64); u > math.MaxInt64 {
			v, err = u, e
		} else {
			v, err = int64(u), e
		}
	case isString(c), isBinary(c):
		p, ok := stringOrBinary(raw)
		if !ok {
			return nil, false
		}
		if isBinary(c) {
			return bytes.Clone(p), true
		}
		return string(p), true
	default:
		return nil, false
	}
	return v, err == nil && r.left() == 0
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
