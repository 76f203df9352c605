package ghost

import (
	"bytes"
	"errors"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// nested is depth arrays of one element around leaf, encoded.
func nested(depth int, leaf []byte) []byte {
	return append(bytes.Repeat([]byte{0x91}, depth), leaf...)
}

func TestCheckValueAcceptsWhatMsgpackWrites(t *testing.T) {
	for _, v := range []any{
		nil, true, 0, -1, -33, 127, 128, 1 << 40, uint64(math.MaxUint64), math.MinInt64, 1.5, float32(2.5),
		"", "text", strings.Repeat("s", 70000), []byte{}, make([]byte, 300), make([]byte, 70000),
		[]int{}, make([]int, 20), make([]int, 70000), map[string]int{}, map[string]any{"a": []any{1, "b", nil}},
		map[int]string{1: "a"}, time.Now(), time.Unix(1<<40, 5), quote{Ticker: "X", Tags: []string{"a"}},
	} {
		raw, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkValue(raw); err != nil {
			t.Errorf("%T %.40v: %v", v, v, err)
		}
	}
	for _, raw := range [][]byte{
		{0xd4, 1, 2}, {0xd5, 1, 2, 3}, {0xd6, 1, 0, 0, 0, 0}, {0xd7, 1, 0, 0, 0, 0, 0, 0, 0, 0},
		append([]byte{0xd8, 1}, make([]byte, 16)...), {0xc7, 0, 1}, {0xc8, 0, 1, 1, 9}, {0xc9, 0, 0, 0, 0, 1},
	} {
		if err := checkValue(raw); err != nil {
			t.Errorf("ext % x: %v", raw, err)
		}
	}
}

func TestCheckValueRefusesBadValues(t *testing.T) {
	deepMap := bytes.Repeat([]byte{0x81, 0xa1, 'k'}, MaxValueDepth+1)
	for name, tc := range map[string]struct {
		raw  []byte
		want error
	}{
		"empty":                {nil, ErrBadValue},
		"reserved code":        {[]byte{0xc1}, ErrBadValue},
		"truncated int":        {[]byte{0xcd, 1}, ErrBadValue},
		"trailing bytes":       {[]byte{0x01, 0x02}, ErrBadValue},
		"array of 4 G":         {[]byte("\xdd\xff\xff\xff\xff"), ErrBadValue},
		"map of 4 G":           {[]byte("\xdf\xf8\x00\x00\x00\x00\x01\x00"), ErrBadValue},
		"array short by one":   {[]byte{0x93, 1, 2}, ErrBadValue},
		"string of 4 GiB":      {[]byte("\xdb\xff\xff\xff\xffabc"), ErrBadValue},
		"binary of 4 GiB":      {[]byte("\xc6\xff\xff\xff\xffabc"), ErrBadValue},
		"ext of 4 GiB":         {[]byte("\xc9\xff\xff\xff\xff\x01abc"), ErrBadValue},
		"fixext short":         {[]byte{0xd8, 1, 2}, ErrBadValue},
		"a million arrays":     {nested(1<<20-1, []byte{0xc0}), ErrValueTooDeep},
		"one array too deep":   {nested(MaxValueDepth+1, []byte{0xc0}), ErrValueTooDeep},
		"empty array too deep": {nested(MaxValueDepth, []byte{0x90}), ErrValueTooDeep},
		"maps too deep":        {append(deepMap, 0xc0), ErrValueTooDeep},
	} {
		if err := checkValue(tc.raw); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	if err := checkValue(nested(MaxValueDepth, []byte{0xc0})); err != nil {
		t.Errorf("a value exactly MaxValueDepth deep: %v", err)
	}
	if err := checkValue(nested(MaxValueDepth-1, []byte{0x90})); err != nil {
		t.Errorf("an empty array at depth MaxValueDepth: %v", err)
	}
	err := checkValue(nested(MaxValueDepth+1, []byte{0xc0}))
	if !strings.Contains(err.Error(), "10000") || !strings.Contains(err.Error(), "MaxValueDepth") {
		t.Errorf("the error does not name the limit: %v", err)
	}
}

func TestMsgReaderAllocatesNothingForLengthsItCannotHold(t *testing.T) {
	inputs := [][]byte{
		[]byte("\xdb\xff\xff\xff\xff"), []byte("\xc6\xff\xff\xff\xff"), []byte("\xdd\xff\xff\xff\xff"),
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 100 {
		for _, in := range inputs {
			r := msgReader{b: in}
			if _, err := r.bytes(); err == nil {
				t.Fatal("bytes() read a length past the end")
			}
			r.reset(in)
			if _, err := r.arrayLen(); err == nil && in[0] == 0xdd {
				t.Fatal("arrayLen() accepted a count past the end")
			}
			_ = checkValue(in)
		}
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Fatalf("300 refusals allocated %d bytes", grew)
	}
}

func TestMsgReaderReadsWhatMsgpackWrites(t *testing.T) {
	a := &appender{}
	enc := msgpack.NewEncoder(a)
	ints := []int64{0, 1, 127, 128, 255, 256, 65535, 65536, math.MaxInt64, -1, -32, -33, -128, -129, -32768, -32769, math.MinInt64}
	for _, i := range ints {
		_ = enc.EncodeInt(i)
		_ = enc.EncodeInt64(i) // the full width too
	}
	_ = enc.EncodeUint(math.MaxUint64)
	_ = enc.EncodeString("key")
	_ = enc.EncodeBytes(nil)
	_ = enc.EncodeBytes([]byte("v"))
	_ = enc.EncodeArrayLen(3)
	r := msgReader{b: a.b}
	for _, want := range ints {
		for range 2 {
			if got, err := r.int(); err != nil || got != want {
				t.Fatalf("int() = %d, %v; want %d", got, err, want)
			}
		}
	}
	if u, err := r.uint(math.MaxUint64); err != nil || u != math.MaxUint64 {
		t.Fatalf("uint() = %d, %v", u, err)
	}
	if s, err := r.str(); err != nil || s != "key" {
		t.Fatalf("str() = %q, %v", s, err)
	}
	if b, err := r.bytes(); err != nil || b != nil {
		t.Fatalf("bytes() of nil = %v, %v", b, err)
	}
	if b, err := r.bytes(); err != nil || string(b) != "v" {
		t.Fatalf("bytes() = %q, %v", b, err)
	}
	if n, err := r.arrayLen(); err == nil {
		t.Fatalf("arrayLen() = %d for an array whose elements are missing", n)
	}
	r.reset([]byte{0xcc, 200})
	if _, err := r.uint(100); err == nil {
		t.Fatal("uint(100) accepted 200")
	}
	r.reset([]byte{0xff})
	if _, err := r.uint(100); err == nil {
		t.Fatal("uint() accepted -1")
	}
}
