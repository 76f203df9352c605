package ghost

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// Bounded reading of msgpack held in memory (a frame's body, a stored
// value, a transfer chunk). Nothing read is trusted: every length is
// checked against the bytes left before anything is allocated or sliced,
// so no input costs more memory than its own size, and nesting is walked
// with a counter, never by recursion.

// MaxValueDepth is how deeply arrays and maps may nest in a value: a
// scalar has depth 0, [1] depth 1, [[1]] depth 2. It is encoding/json's
// limit, so any JSON value the HTTP gateway accepts fits. Put and Add
// refuse deeper values with ErrValueTooDeep, and a deeper value found in
// the cache anyway is an error for its reader.
const MaxValueDepth = 10000

var errShort = errors.New("msgpack: truncated")

// msgReader reads msgpack from b without trusting a length it reads. Its
// zero value reads nothing; reset points it at a buffer.
type msgReader struct {
	b   []byte
	off int
}

func (r *msgReader) reset(b []byte) { r.b, r.off = b, 0 }

// left is how many bytes are still unread.
func (r *msgReader) left() int { return len(r.b) - r.off }

// take returns the next n bytes, a view into the buffer.
func (r *msgReader) take(n int) ([]byte, error) {
	if n < 0 || n > r.left() {
		return nil, fmt.Errorf("%w: %d bytes declared, %d left", errShort, n, r.left())
	}
	p := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return p, nil
}

func (r *msgReader) code() (byte, error) {
	if r.off >= len(r.b) {
		return 0, errShort
	}
	c := r.b[r.off]
	r.off++
	return c, nil
}

// uintN reads a big-endian unsigned integer of n bytes (1, 2, 4 or 8).
func (r *msgReader) uintN(n int) (uint64, error) {
	p, err := r.take(n)
	if err != nil {
		return 0, err
	}
	switch n {
	case 1:
		return uint64(p[0]), nil
	case 2:
		return uint64(binary.BigEndian.Uint16(p)), nil
	case 4:
		return uint64(binary.BigEndian.Uint32(p)), nil
	}
	return binary.BigEndian.Uint64(p), nil
}

// arrayLen reads an array header. Each element takes at least one byte, so
// a count above the bytes left is refused before anyone allocates for it.
func (r *msgReader) arrayLen() (int, error) {
	c, err := r.code()
	if err != nil {
		return 0, err
	}
	var n uint64
	switch {
	case msgpcode.IsFixedArray(c):
		n = uint64(c & msgpcode.FixedArrayMask)
	case c == msgpcode.Array16:
		n, err = r.uintN(2)
	case c == msgpcode.Array32:
		n, err = r.uintN(4)
	default:
		return 0, fmt.Errorf("msgpack: code %#x where an array was expected", c)
	}
	if err == nil && n > uint64(r.left()) {
		err = fmt.Errorf("%w: array of %d elements in %d bytes", errShort, n, r.left())
	}
	return int(n), err
}

// int reads an integer of any msgpack width.
func (r *msgReader) int() (int64, error) {
	c, err := r.code()
	if err != nil {
		return 0, err
	}
	if msgpcode.IsFixedNum(c) {
		return int64(int8(c)), nil
	}
	var u uint64
	switch c {
	case msgpcode.Uint8, msgpcode.Int8:
		u, err = r.uintN(1)
	case msgpcode.Uint16, msgpcode.Int16:
		u, err = r.uintN(2)
	case msgpcode.Uint32, msgpcode.Int32:
		u, err = r.uintN(4)
	case msgpcode.Uint64, msgpcode.Int64:
		u, err = r.uintN(8)
	default:
		return 0, fmt.Errorf("msgpack: code %#x where an integer was expected", c)
	}
	if err != nil {
		return 0, err
	}
	switch c {
	case msgpcode.Int8:
		return int64(int8(u)), nil
	case msgpcode.Int16:
		return int64(int16(u)), nil
	case msgpcode.Int32:
		return int64(int32(u)), nil
	case msgpcode.Uint64:
		if u > math.MaxInt64 {
			return 0, fmt.Errorf("msgpack: integer %d out of range", u)
		}
	}
	return int64(u), nil
}

// uint reads a non-negative integer no larger than max.
func (r *msgReader) uint(max uint64) (uint64, error) {
	var u uint64
	var err error
	if r.off < len(r.b) && r.b[r.off] == msgpcode.Uint64 { // the one width int cannot hold
		r.off++
		u, err = r.uintN(8)
	} else {
		var i int64
		i, err = r.int()
		if err == nil && i < 0 {
			err = fmt.Errorf("msgpack: integer %d where a non-negative one was expected", i)
		}
		u = uint64(i)
	}
	if err == nil && u > max {
		err = fmt.Errorf("msgpack: integer %d out of range 0..%d", u, max)
	}
	return u, err
}

// raw reads a string or binary (msgpack spells them alike but for the
// code) and returns a view of its bytes; nil reads as nil.
func (r *msgReader) raw() ([]byte, error) {
	c, err := r.code()
	if err != nil {
		return nil, err
	}
	var n uint64
	switch {
	case c == msgpcode.Nil:
		return nil, nil
	case msgpcode.IsFixedString(c):
		n = uint64(c & msgpcode.FixedStrMask)
	case c == msgpcode.Str8, c == msgpcode.Bin8:
		n, err = r.uintN(1)
	case c == msgpcode.Str16, c == msgpcode.Bin16:
		n, err = r.uintN(2)
	case c == msgpcode.Str32, c == msgpcode.Bin32:
		n, err = r.uintN(4)
	default:
		return nil, fmt.Errorf("msgpack: code %#x where a string or binary was expected", c)
	}
	if err != nil {
		return nil, err
	}
	return r.take(int(n))
}

// str reads a string or binary into a new string.
func (r *msgReader) str() (string, error) {
	p, err := r.raw()
	return string(p), err
}

// bytes reads a string or binary into a new slice, which outlives the
// buffer; nil stays nil.
func (r *msgReader) bytes() ([]byte, error) {
	p, err := r.raw()
	if p == nil || err != nil {
		return nil, err
	}
	return append(make([]byte, 0, len(p)), p...), nil
}

// skip reads past one whole value, checking every length in it against
// the bytes left and its nesting against maxDepth. It walks with a stack of
// counts, so a deep value costs a counter per level and no recursion.
func (r *msgReader) skip(maxDepth int) error {
	var stackBuf [32]int
	open := stackBuf[:0] // items still to read in each open array or map
	for {
		items, container, err := r.skipHead()
		if err != nil {
			return err
		}
		if container {
			if len(open) >= maxDepth {
				return fmt.Errorf("%w: deeper than %d levels (MaxValueDepth)", ErrValueTooDeep, maxDepth)
			}
			if items > r.left() {
				return fmt.Errorf("%w: %d items declared in %d bytes", ErrBadValue, items, r.left())
			}
			if items > 0 {
				open = append(open, items)
				continue
			}
		}
		// One value is complete; it may complete the containers around it.
		for len(open) > 0 {
			open[len(open)-1]--
			if open[len(open)-1] > 0 {
				break
			}
			open = open[:len(open)-1]
		}
		if len(open) == 0 {
			return nil
		}
	}
}

// skipHead reads past the head of one value and, for a scalar, its
// payload. For an array or a map it reports how many items follow (a map's
// keys and values both count).
func (r *msgReader) skipHead() (items int, container bool, err error) {
	c, err := r.code()
	if err != nil {
		return 0, false, fmt.Errorf("%w: %w", ErrBadValue, err)
	}
	var size uint64 // bytes of payload to skip
	switch {
	case msgpcode.IsFixedNum(c), c == msgpcode.Nil, c == msgpcode.False, c == msgpcode.True:
	case msgpcode.IsFixedArray(c):
		return int(c & msgpcode.FixedArrayMask), true, nil
	case msgpcode.IsFixedMap(c):
		return 2 * int(c&msgpcode.FixedMapMask), true, nil
	case msgpcode.IsFixedString(c):
		size = uint64(c & msgpcode.FixedStrMask)
	case c == msgpcode.Array16, c == msgpcode.Array32, c == msgpcode.Map16, c == msgpcode.Map32:
		n, err := r.uintN(headWidth(c))
		if err != nil {
			return 0, false, fmt.Errorf("%w: %w", ErrBadValue, err)
		}
		if c == msgpcode.Map16 || c == msgpcode.Map32 {
			n *= 2
		}
		return int(n), true, nil
	case c == msgpcode.Str8, c == msgpcode.Bin8, c == msgpcode.Str16, c == msgpcode.Bin16,
		c == msgpcode.Str32, c == msgpcode.Bin32:
		size, err = r.uintN(headWidth(c))
	case c == msgpcode.Ext8, c == msgpcode.Ext16, c == msgpcode.Ext32:
		size, err = r.uintN(headWidth(c))
		size++ // the type byte
	default:
		size = fixedSize(c)
		if size == 0 {
			return 0, false, fmt.Errorf("%w: unknown code %#x", ErrBadValue, c)
		}
	}
	if err == nil && size > uint64(r.left()) {
		err = fmt.Errorf("%d bytes declared, %d left", size, r.left())
	}
	if err != nil {
		return 0, false, fmt.Errorf("%w: %w", ErrBadValue, err)
	}
	r.off += int(size)
	return 0, false, nil
}

// headWidth is the width of the length that follows a code.
func headWidth(c byte) int {
	switch c {
	case msgpcode.Str8, msgpcode.Bin8, msgpcode.Ext8:
		return 1
	case msgpcode.Str16, msgpcode.Bin16, msgpcode.Ext16, msgpcode.Array16, msgpcode.Map16:
		return 2
	}
	return 4
}

// fixedSize is the payload size of the codes whose payload has one size,
// or 0 for codes msgpack does not define.
func fixedSize(c byte) uint64 {
	switch c {
	case msgpcode.Uint8, msgpcode.Int8:
		return 1
	case msgpcode.Uint16, msgpcode.Int16:
		return 2
	case msgpcode.Uint32, msgpcode.Int32, msgpcode.Float:
		return 4
	case msgpcode.Uint64, msgpcode.Int64, msgpcode.Double:
		return 8
	case msgpcode.FixExt1:
		return 2
	case msgpcode.FixExt2:
		return 3
	case msgpcode.FixExt4:
		return 5
	case msgpcode.FixExt8:
		return 9
	case msgpcode.FixExt16:
		return 17
	}
	return 0
}

// checkValue checks that b holds exactly one well-formed msgpack value
// nested no deeper than MaxValueDepth: the condition for decoding it
// without a Go type to guide the decoder (whose allocations are then
// bounded by len(b)), and for re-encoding it as JSON.
func checkValue(b []byte) error {
	r := msgReader{b: b}
	if err := r.skip(MaxValueDepth); err != nil {
		return err
	}
	if r.left() != 0 {
		return fmt.Errorf("%w: %d bytes after the value", ErrBadValue, r.left())
	}
	return nil
}

// bool reads a boolean.
func (r *msgReader) bool() (bool, error) {
	c, err := r.code()
	switch {
	case err != nil:
		return false, err
	case c == msgpcode.True:
		return true, nil
	case c == msgpcode.False:
		return false, nil
	}
	return false, fmt.Errorf("msgpack: code %#x where a boolean was expected", c)
}
