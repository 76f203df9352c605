package ghost

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// The values of attacks 1 and 3 of issue 7, as they were sent.
var (
	hugeArrayValue = []byte("\xdd\xff\xff\xff\xff")                    // an array claiming 4 G elements
	hugeMapValue   = []byte("\xdf\xf8\x00\x00\x00\x00\x01\x00")        // a map claiming 4 G pairs
	deepValue      = append(bytes.Repeat([]byte{0x91}, 1<<20-1), 0xc0) // 1 MiB: a million nested arrays
)

// plantValue stores raw under key on its owner without any check, as a
// node of an older release might have.
func plantValue(owner *Node, key string, raw []byte) {
	owner.store.set(owner.partitionOf(key), key, raw, 0, false)
}

// Attack 1: a value whose header claims billions of elements, written raw.
// The next reader died in make([]any, n).
func TestValueClaimingBillionsOfElements(t *testing.T) {
	c := newCluster(t, 2, true)
	ctx, gw, owner := context.Background(), newGatewayClient(t), c.nodes[1]
	for name, value := range map[string][]byte{"array": hugeArrayValue, "map": hugeMapValue} {
		k := c.keyOwnedBy(owner, name)
		resp := rawCall(t, owner.Addr(), &request{id: 1, op: OpPut, key: k, value: value, ttl: int64(NoExpiry)})
		if _, err := resp.result(); !errors.Is(err, ErrBadValue) {
			t.Fatalf("%s: raw put: %v, want ErrBadValue", name, err)
		}
		if _, err := owner.Get(ctx, k); !errors.Is(err, ErrCacheMiss) {
			t.Fatalf("%s: the refused value was stored: %v", name, err)
		}
		// Found in the store anyway: an error for every reader, never a crash.
		plantValue(owner, k, value)
		for _, n := range c.nodes {
			if _, err := n.Get(ctx, k); !errors.Is(err, ErrBadValue) {
				t.Fatalf("%s: Get via %s: %v, want ErrBadValue", name, n.Addr(), err)
			}
			rep := gw.post(t, n, "get", sdkBody(k, nil, nil))
			if rep.Status != 0 || rep.Error != errCodeValue {
				t.Fatalf("%s: POST /get via %s: %+v", name, n.Addr(), rep)
			}
		}
	}
	c.checkServes("after-huge")
}

// nest is leaf inside depth arrays.
func nest(depth int, leaf any) any {
	v := leaf
	for range depth {
		v = []any{v}
	}
	return v
}

// Attack 3: a million nested arrays in a 1 MiB value, then POST /get:
// encoding/json overflowed the stack re-encoding it.
func TestValueNestedAMillionDeep(t *testing.T) {
	c := newCluster(t, 2, true)
	ctx, gw, owner := context.Background(), newGatewayClient(t), c.nodes[1]
	k := c.keyOwnedBy(owner, "deep")
	resp := rawCall(t, owner.Addr(), &request{id: 1, op: OpPut, key: k, value: deepValue, ttl: int64(NoExpiry)})
	if _, err := resp.result(); !errors.Is(err, ErrValueTooDeep) {
		t.Fatalf("raw put: %v, want ErrValueTooDeep", err)
	}
	plantValue(owner, k, deepValue)
	for _, n := range c.nodes {
		if _, err := n.Get(ctx, k); !errors.Is(err, ErrValueTooDeep) {
			t.Fatalf("Get via %s: %v, want ErrValueTooDeep", n.Addr(), err)
		}
		if rep := gw.post(t, n, "get", sdkBody(k, nil, nil)); rep.Status != 0 || rep.Error != errCodeValue {
			t.Fatalf("POST /get via %s: %+v", n.Addr(), rep)
		}
	}

	// The Go API refuses a value one level too deep, naming the limit, and
	// takes the deepest allowed one.
	err := c.nodes[0].Put(ctx, k, nest(MaxValueDepth+1, 1), NoExpiry)
	if !errors.Is(err, ErrValueTooDeep) || !strings.Contains(err.Error(), "MaxValueDepth") {
		t.Fatalf("Put of a value too deep: %v", err)
	}
	if err := c.nodes[0].Put(ctx, k, nest(MaxValueDepth, 1), NoExpiry); err != nil {
		t.Fatalf("Put of a value MaxValueDepth deep: %v", err)
	}
	if it, err := c.nodes[0].Get(ctx, k); err != nil || !reflect.DeepEqual(it.Value, nest(MaxValueDepth, int64(1))) {
		t.Fatalf("Get of a value MaxValueDepth deep: %v", err)
	}

	// Over HTTP, JSON deeper than encoding/json takes is refused, and the
	// deepest value a reply can carry goes both ways.
	jsonNest := func(depth int) string { return strings.Repeat("[", depth) + "1" + strings.Repeat("]", depth) }
	body := `{"Gobj":{"Key":"` + k + `","Value":` + jsonNest(MaxValueDepth) + `}}`
	if code, rep := gw.do(t, owner, http.MethodPost, "put", body); code != http.StatusUnprocessableEntity || rep.Error != errCodeJSON {
		t.Fatalf("POST /put of JSON too deep: HTTP %d %+v", code, rep)
	}
	v := jsonNest(MaxValueDepth - 2) // the reply's envelope takes two levels
	expect(t, "put", gw.post(t, owner, "put", `{"Gobj":{"Key":"`+k+`","Value":`+v+`}}`), 1, "STORED")
	if rep := gw.post(t, c.nodes[0], "get", sdkBody(k, nil, nil)); !sameJSON(t, rep.Gobj.Value, v) {
		t.Fatalf("POST /get of a deep value: %+v", rep)
	}
	c.checkServes("after-deep")
}

// FuzzDecodeValue feeds the value decoder what a peer, or a node's own
// store, could hand it, and what the gateway then does with the result. The
// seeds include the values of attacks 1 and 3 of issue 7. Run it for a
// while with
//
//	go test -run='^$' -fuzz='^FuzzDecodeValue$' -fuzztime=10m -parallel=1 .
func FuzzDecodeValue(f *testing.F) {
	for _, seed := range [][]byte{
		hugeArrayValue, hugeMapValue, deepValue, nested(MaxValueDepth, []byte{0xc0}),
		[]byte("\xdb\xff\xff\xff\xff"), []byte("\xc6\xff\xff\xff\xff"), []byte("\xc9\xff\xff\xff\xff\x01"),
		{0xc1}, {0x92, 0x01}, {0x81, 0x90, 0x01}, {0xd6, 0xff, 0, 0, 0, 1}, {0xd7, 0xff, 0, 0, 0, 0, 0, 0, 0, 1},
	} {
		f.Add(seed)
	}
	for _, v := range []any{
		"text", 42, -7, 3.5, true, nil, []byte{1, 2}, []any{1, "a", []any{nil}}, map[string]any{"a": map[string]any{"b": 1}},
		map[int]string{1: "a"}, map[float64]bool{1.5: true}, time.Date(2026, 11, 25, 9, 30, 0, 0, time.UTC),
		quote{Ticker: "AMZN", Price: 181.25, Tags: []string{"tech"}},
	} {
		raw, err := msgpack.Marshal(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		v, err := decodeValue(raw)
		if err != nil {
			return
		}
		if checkValue(raw) != nil {
			t.Fatal("decoded a value checkValue refuses")
		}
		// What POST /get does with it.
		if _, err := json.Marshal(gatewayReply{Gobj: gobjOut{Value: jsonSafe(v)}}); err != nil {
			t.Fatalf("the gateway cannot write %#v: %v", v, err)
		}
		// Stored again, it is accepted again.
		again, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatalf("re-encode %#v: %v", v, err)
		}
		if err := checkValue(again); err != nil {
			t.Fatalf("re-encoded %#v refused: %v", v, err)
		}
	})
}

// decodeScalar, the fast path of Get, decodes every scalar as the msgpack
// path does.
func TestScalarDecodingMatchesMsgpack(t *testing.T) {
	values := []any{
		nil, true, false, 0, 1, 127, 128, 255, 256, 65535, 65536, -1, -32, -33, -128, -129, -32768, -32769,
		int64(math.MinInt64), int64(math.MaxInt64), uint64(math.MaxUint64), uint32(math.MaxUint32),
		float32(1.5), 3.25, math.Inf(-1), "", "short", strings.Repeat("s", 40), strings.Repeat("m", 300),
		strings.Repeat("l", 70000), []byte{}, []byte("bin"), bytes.Repeat([]byte("B"), 300),
	}
	for _, v := range values {
		raw, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		fast, ok := decodeScalar(raw)
		if !ok {
			t.Errorf("%T %.20v: not decoded as a scalar", v, v)
			continue
		}
		if err := checkValue(raw); err != nil {
			t.Fatal(err)
		}
		vd := valueDecoders.Get().(*valueDecoder)
		vd.r.Reset(raw)
		vd.dec.ResetReader(&vd.r)
		slow, err := decodeAny(vd.dec)
		valueDecoders.Put(vd)
		if err != nil || !reflect.DeepEqual(fast, slow) {
			t.Errorf("%T %.20v: fast path %T %.20v, msgpack %T %.20v (%v)", v, v, fast, fast, slow, slow, err)
		}
	}
	for _, raw := range [][]byte{{}, {0xd9, 5, 'a'}, {0xcb, 0}, {0x01, 0x02}, {0xc4}, {0x91, 0x01}} {
		if v, ok := decodeScalar(raw); ok {
			t.Errorf("%x decoded as %v", raw, v)
		}
	}
}

func TestGetAs(t *testing.T) {
	c := newCluster(t, 2, false)
	ctx := context.Background()
	n := c.nodes[0]
	for key, v := range map[string]any{"s": "text", "i": 42, "f": 2.5, "b": true, "raw": []byte("x"), "q": quote{Ticker: "AMZN", Price: 181.25}} {
		if err := n.Put(ctx, key, v, NoExpiry); err != nil {
			t.Fatal(err)
		}
	}
	for _, via := range c.nodes { // owner-local and forwarded
		if s, err := GetAs[string](ctx, via, "s"); err != nil || s != "text" {
			t.Errorf("GetAs[string] = %q, %v", s, err)
		}
		if i, err := GetAs[int](ctx, via, "i"); err != nil || i != 42 {
			t.Errorf("GetAs[int] = %d, %v", i, err)
		}
		if i, err := GetAs[int64](ctx, via, "i"); err != nil || i != 42 {
			t.Errorf("GetAs[int64] = %d, %v", i, err)
		}
		if f, err := GetAs[float64](ctx, via, "f"); err != nil || f != 2.5 {
			t.Errorf("GetAs[float64] = %v, %v", f, err)
		}
		if f, err := GetAs[float64](ctx, via, "i"); err != nil || f != 42 {
			t.Errorf("GetAs[float64] of an integer = %v, %v (msgpack converts)", f, err)
		}
		if b, err := GetAs[bool](ctx, via, "b"); err != nil || !b {
			t.Errorf("GetAs[bool] = %v, %v", b, err)
		}
		if b, err := GetAs[[]byte](ctx, via, "raw"); err != nil || string(b) != "x" {
			t.Errorf("GetAs[[]byte] = %q, %v", b, err)
		}
		if q, err := GetAs[quote](ctx, via, "q"); err != nil || q.Ticker != "AMZN" || q.Price != 181.25 {
			t.Errorf("GetAs[quote] = %+v, %v", q, err)
		}
		if _, err := GetAs[int](ctx, via, "s"); err == nil {
			t.Error("GetAs[int] of a string succeeded")
		}
		if _, err := GetAs[string](ctx, via, "absent"); !errors.Is(err, ErrCacheMiss) {
			t.Errorf("GetAs of an absent key: %v", err)
		}
	}
}
