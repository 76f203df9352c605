package ghost

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/vmihailenco/msgpack/v5"
)

// gatewayClient speaks HTTP to nodes as the original SDKs do: POST with
// Content-type: application/json and a Gobj body.
type gatewayClient struct{ hc *http.Client }

// newGatewayClient returns a client whose connections are closed when the
// test ends (before the cluster's nodes, which were started earlier).
func newGatewayClient(t *testing.T) *gatewayClient {
	tr := &http.Transport{} // no proxy: traffic stays on 127.0.0.1
	t.Cleanup(tr.CloseIdleConnections)
	return &gatewayClient{hc: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

// wireReply is a reply as a client reads it; Value stays JSON.
type wireReply struct {
	Gobj struct {
		Key   string
		Value json.RawMessage
		TTL   int64
	}
	Status  int
	Message string
	Error   string
}

// sdkBody is the body the SDKs send: every field, always.
func sdkBody(key, value, ttl any) string {
	b, err := json.Marshal(map[string]any{"Gobj": map[string]any{"Key": key, "Value": value, "TTL": ttl}})
	if err != nil {
		panic(err)
	}
	return string(b)
}

// do sends body to n's /cmd and returns the HTTP status code and the reply,
// which must be JSON whatever the code.
func (g *gatewayClient) do(t *testing.T, n *Node, method, cmd, body string) (int, wireReply) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+n.Addr()+"/"+cmd, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-type", "application/json")
	resp, err := g.hc.Do(req)
	if err != nil {
		t.Fatalf("%s /%s: %v", method, cmd, err)
	}
	return resp.StatusCode, readReply(t, resp)
}

// readReply reads and closes a reply, which must be JSON whatever its
// HTTP status.
func readReply(t *testing.T, resp *http.Response) wireReply {
	t.Helper()
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q", resp.Request.URL.Path, ct)
	}
	var rep wireReply
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		t.Fatalf("%s: HTTP %d, reply not JSON: %v", resp.Request.URL.Path, resp.StatusCode, err)
	}
	return rep
}

// post runs a command on n as an SDK would and checks the HTTP status is
// 200, as it is for every command's outcome.
func (g *gatewayClient) post(t *testing.T, n *Node, cmd, body string) wireReply {
	t.Helper()
	code, rep := g.do(t, n, http.MethodPost, cmd, body)
	if code != http.StatusOK {
		t.Fatalf("POST /%s: HTTP %d, want 200; %+v", cmd, code, rep)
	}
	return rep
}

// expect checks a reply's Status and Message.
func expect(t *testing.T, what string, rep wireReply, status int, message string) {
	t.Helper()
	if rep.Status != status || rep.Message != message {
		t.Errorf("%s: Status %d Message %q (Error %q), want %d %q", what, rep.Status, rep.Message, rep.Error, status, message)
	}
}

// sameJSON reports whether two JSON texts hold the same value.
func sameJSON(t *testing.T, got json.RawMessage, want string) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("reply value %s: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("wanted value %s: %v", want, err)
	}
	return reflect.DeepEqual(g, w)
}

func TestHTTPGateway(t *testing.T) {
	c := newCluster(t, 3, true)
	gw := newGatewayClient(t)
	ctx := context.Background()

	t.Run("commands from any node, mixed with the Go API", func(t *testing.T) {
		// goCall runs cmd through the Go API and returns its GhostDB word.
		goCall := func(n *Node, cmd, key string, value any) (string, any) {
			switch cmd {
			case "get":
				it, err := n.Get(ctx, key)
				return Message(OpGet, err), it.Value
			case "put":
				return Message(OpPut, n.Put(ctx, key, value, NoExpiry)), nil
			case "add":
				return Message(OpAdd, n.Add(ctx, key, value, NoExpiry)), nil
			case "delete":
				return Message(OpDelete, n.Delete(ctx, key)), nil
			}
			t.Fatalf("no Go call %q", cmd)
			return "", nil
		}
		for i, owner := range c.nodes {
			// Two nodes that do not own the key: one asked over HTTP, one
			// through Go. The owner is asked over HTTP now and then.
			web, api := c.nodes[(i+1)%3], c.nodes[(i+2)%3]
			key := c.keyOwnedBy(owner, "mixed")
			steps := []struct {
				goAPI   bool // through api's Go methods, else over HTTP
				atOwner bool // over HTTP to the owner, else to web
				cmd     string
				value   any
				message string
				want    any // the value a get returns
			}{
				{cmd: "get", message: "CACHE_MISS"},
				{cmd: "delete", message: "NOT_FOUND"},
				{cmd: "put", value: "v1", message: "STORED"},
				{goAPI: true, cmd: "get", message: "OK", want: "v1"},
				{cmd: "add", value: "v2", message: "NOT_STORED"},
				{goAPI: true, cmd: "add", value: "v2", message: "NOT_STORED"},
				{goAPI: true, cmd: "put", value: "v3", message: "STORED"},
				{cmd: "get", message: "OK", want: "v3"},
				{cmd: "put", value: "v4", message: "STORED"},
				{atOwner: true, cmd: "get", message: "OK", want: "v4"},
				{atOwner: true, cmd: "add", value: "v5", message: "NOT_STORED"},
				{cmd: "get", message: "OK", want: "v4"},
				{cmd: "delete", message: "REMOVED"},
				{atOwner: true, cmd: "get", message: "CACHE_MISS"},
				{goAPI: true, cmd: "get", message: "CACHE_MISS"},
				{cmd: "get", message: "CACHE_MISS"},
				{cmd: "add", value: "v5", message: "STORED"},
				{goAPI: true, cmd: "get", message: "OK", want: "v5"},
				{goAPI: true, cmd: "delete", message: "REMOVED"},
				{cmd: "delete", message: "NOT_FOUND"},
				{goAPI: true, cmd: "add", value: "v6", message: "STORED"},
				{cmd: "get", message: "OK", want: "v6"},
			}
			for j, s := range steps {
				what := fmt.Sprintf("owner %d step %d: %s", i, j, s.cmd)
				if s.goAPI {
					msg, got := goCall(api, s.cmd, key, s.value)
					if msg != s.message || got != s.want {
						t.Errorf("%s through Go: %q %v, want %q %v", what, msg, got, s.message, s.want)
					}
					continue
				}
				to := web
				if s.atOwner {
					to = owner
				}
				rep := gw.post(t, to, s.cmd, sdkBody(key, s.value, -1))
				status := 0
				if s.message == "OK" || s.message == "STORED" || s.message == "REMOVED" {
					status = 1
				}
				expect(t, what, rep, status, s.message)
				if rep.Error != "" || rep.Gobj.Key != key {
					t.Errorf("%s: Error %q Key %q, want none and %q", what, rep.Error, rep.Gobj.Key, key)
				}
				if s.want != nil && !sameJSON(t, rep.Gobj.Value, fmt.Sprintf("%q", s.want)) {
					t.Errorf("%s: Value %s, want %q", what, rep.Gobj.Value, s.want)
				}
			}
		}
	})

	t.Run("JSON values read back in Go", func(t *testing.T) {
		web, api := c.nodes[0], c.nodes[1]
		key := c.keyOwnedBy(c.nodes[2], "json-in")
		for _, tc := range []struct {
			json string
			want any
		}{
			{`42`, int64(42)},
			{`-7`, int64(-7)},
			{`9223372036854775807`, int64(math.MaxInt64)},
			{`1.5`, 1.5},
			{`2.0`, 2.0},
			{`1e3`, 1000.0},
			{`18446744073709551616`, 18446744073709551616.0},
			{`"text"`, "text"},
			{`true`, true},
			{`null`, nil},
			{`[1, "x", null]`, []any{int64(1), "x", nil}},
			{`{"a": 1, "b": [2.5, {"c": "d"}]}`, map[string]any{"a": int64(1), "b": []any{2.5, map[string]any{"c": "d"}}}},
		} {
			body := fmt.Sprintf(`{"Gobj": {"Key": %q, "Value": %s, "TTL": -1}}`, key, tc.json)
			expect(t, "put "+tc.json, gw.post(t, web, "put", body), 1, "STORED")
			it, err := api.Get(ctx, key)
			if err != nil || !reflect.DeepEqual(it.Value, tc.want) {
				t.Errorf("JSON %s read in Go: %#v %v, want %#v", tc.json, it.Value, err, tc.want)
			}
			rep := gw.post(t, api, "get", sdkBody(key, nil, nil))
			if !sameJSON(t, rep.Gobj.Value, tc.json) {
				t.Errorf("JSON %s read over HTTP: %s", tc.json, rep.Gobj.Value)
			}
		}
	})

	t.Run("Go values read over HTTP", func(t *testing.T) {
		type point struct {
			X, Y  int
			Label string
			Tags  []string
		}
		web, api := c.nodes[2], c.nodes[0]
		key := c.keyOwnedBy(c.nodes[1], "go-in")
		for _, tc := range []struct {
			name  string
			value any
			json  string
		}{
			{"struct", point{1, 2, "p", []string{"a"}}, `{"X": 1, "Y": 2, "Label": "p", "Tags": ["a"]}`},
			{"struct in a map", map[string]any{"p": point{Label: "q"}}, `{"p": {"X": 0, "Y": 0, "Label": "q", "Tags": null}}`},
			{"map with int keys", map[int]string{1: "a", 2: "b"}, `{"1": "a", "2": "b"}`},
			{"time", time.Date(2026, 11, 25, 7, 0, 0, 5, time.FixedZone("X", 3600)), `"2026-11-25T06:00:00.000000005Z"`},
			{"NaN", math.NaN(), `"NaN"`},
			{"infinity", math.Inf(-1), `"-Inf"`},
			{"float32", float32(0.5), `0.5`},
			{"uint", uint(7), `7`},
			{"slice", []int{1, 2}, `[1, 2]`},
		} {
			if err := api.Put(ctx, key, tc.value, NoExpiry); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			rep := gw.post(t, web, "get", sdkBody(key, nil, nil))
			expect(t, tc.name, rep, 1, "OK")
			if !sameJSON(t, rep.Gobj.Value, tc.json) {
				t.Errorf("%s over HTTP: %s, want %s", tc.name, rep.Gobj.Value, tc.json)
			}
		}
	})

	t.Run("nodeSize and flush", func(t *testing.T) {
		expect(t, "flush", gw.post(t, c.nodes[0], "flush", sdkBody("", nil, nil)), 1, "FLUSHED")
		const pairs = 60
		for i := range pairs {
			if err := c.nodes[i%3].Put(ctx, fmt.Sprint("size-", i), i, NoExpiry); err != nil {
				t.Fatal(err)
			}
		}
		var total int64
		for i, n := range c.nodes {
			rep := gw.post(t, n, "nodeSize", sdkBody("", nil, nil))
			expect(t, "nodeSize", rep, 1, "OK")
			if !sameJSON(t, rep.Gobj.Value, fmt.Sprint(n.store.len())) {
				t.Errorf("node %d nodeSize %s, holds %d", i, rep.Gobj.Value, n.store.len())
			}
			total += n.store.len()
		}
		if want := pairs * int64(min(2, len(c.nodes))); total != want { // every pair has a backup
			t.Errorf("nodes hold %d pairs, want %d", total, want)
		}
		// An SDK may send no body at all where no key is needed.
		expect(t, "flush", gw.post(t, c.nodes[1], "flush", ""), 1, "FLUSHED")
		for i, n := range c.nodes {
			rep := gw.post(t, n, "nodeSize", "")
			if !sameJSON(t, rep.Gobj.Value, "0") {
				t.Errorf("node %d nodeSize %s after flush", i, rep.Gobj.Value)
			}
		}
	})

	t.Run("ping and metrics", func(t *testing.T) {
		n := c.nodes[1]
		for _, method := range []string{http.MethodPost, http.MethodGet} {
			code, rep := gw.do(t, n, method, "ping", "")
			if code != http.StatusOK {
				t.Errorf("%s /ping: HTTP %d", method, code)
			}
			expect(t, method+" /ping", rep, 1, "OK")
		}
		for cmd, field := range map[string]string{
			"getSnitchMetrics":   "Goroutines",
			"getSysMetrics":      "Goroutines",
			"getWatchdogMetrics": "TotalRequests",
			"getAppMetrics":      "TotalRequests",
		} {
			rep := gw.post(t, n, cmd, sdkBody("", nil, nil))
			expect(t, cmd, rep, 1, "OK")
			var samples []map[string]any
			if err := json.Unmarshal(rep.Gobj.Value, &samples); err != nil || len(samples) == 0 {
				t.Fatalf("%s: Value %s: %v", cmd, rep.Gobj.Value, err)
			}
			last := samples[len(samples)-1]
			if _, ok := last[field]; !ok || last["Timestamp"] == nil {
				t.Errorf("%s: last sample %v lacks %s or Timestamp", cmd, last, field)
			}
		}
		// The watchdog counts HTTP calls as the Go calls they are, on the
		// node that owns the key.
		key := c.keyOwnedBy(n, "counted")
		before := n.stats.getRequests.Load()
		gw.post(t, c.nodes[0], "get", sdkBody(key, nil, nil))
		if after := n.stats.getRequests.Load(); after != before+1 {
			t.Errorf("owner counted %d gets, want %d", after, before+1)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		n := c.nodes[0]
		// A body just under the limit whose value is over MaxValueSize once
		// encoded: refused by Put, with HTTP 200.
		big := strings.Repeat("x", n.cfg.MaxValueSize)
		rep := gw.post(t, n, "put", sdkBody("big", big, -1))
		if rep.Status != 0 || rep.Error != errCodeTooLarge || !strings.HasPrefix(rep.Message, ErrValueTooLarge.Error()) {
			t.Errorf("value over MaxValueSize: %+v", rep)
		}
		tooBig := strings.Repeat("x", int(n.gateway.bodyLimit))
		for _, tc := range []struct {
			name, method, cmd, body string
			code                    int
			message, errCode        string // message: a prefix
		}{
			{"invalid JSON", "POST", "put", `{"Gobj": {"Key": "k", "Value": }}`, 422, "invalid JSON", errCodeJSON},
			{"truncated JSON", "POST", "get", `{"Gobj": {"Key": "k"`, 422, "invalid JSON", errCodeJSON},
			{"not JSON", "POST", "get", `Key=k`, 422, "invalid JSON", errCodeJSON},
			{"not an object", "POST", "get", `["k"]`, 422, "invalid JSON", errCodeJSON},
			{"two values", "POST", "get", `{} {}`, 422, "invalid JSON", errCodeJSON},
			{"body over the limit", "POST", "put", sdkBody("k", tooBig, -1), 413, "request body", errCodeTooLarge},
			{"unknown command", "POST", "frobnicate", sdkBody("k", nil, nil), 200, "Command 'frobnicate' is not a recognized command", errCodeCommand},
			{"no command", "POST", "", "", 200, "Command '' is not a recognized command", errCodeCommand},
			{"GET of a command", "GET", "put", "", 405, "method GET not allowed", errCodeMethod},
			{"empty key", "POST", "get", sdkBody("", nil, nil), 200, "ghost: bad key: empty", errCodeKey},
			{"no key", "POST", "delete", `{"Gobj": {}}`, 200, "ghost: bad key: empty", errCodeKey},
			{"null key", "POST", "put", `{"Gobj": {"Key": null, "Value": 1}}`, 200, "ghost: bad key: empty", errCodeKey},
			{"long key", "POST", "put", sdkBody(strings.Repeat("k", MaxKeyLen+1), 1, -1), 200, "ghost: bad key: 251 bytes", errCodeKey},
			{"key not UTF-8", "POST", "add", "{\"Gobj\": {\"Key\": \"bad\xff\xfe\", \"Value\": 1}}", 200, "ghost: bad key: not valid UTF-8", errCodeKey},
			{"number key", "POST", "get", sdkBody(42, nil, nil), 200, "ghost: bad key: not a JSON string", errCodeKey},
			{"object key", "POST", "delete", sdkBody(map[string]int{"a": 1}, nil, nil), 200, "ghost: bad key: not a JSON string", errCodeKey},
			{"TTL below -1", "POST", "put", sdkBody("k", 1, -2), 200, "ghost: bad TTL", errCodeTTL},
			{"fractional TTL", "POST", "add", sdkBody("k", 1, 1.5), 200, "ghost: bad TTL", errCodeTTL},
			{"TTL a string", "POST", "put", sdkBody("k", 1, "300"), 200, "ghost: bad TTL", errCodeTTL},
			{"TTL past time.Duration", "POST", "put", sdkBody("k", 1, int64(math.MaxInt64)), 200, "ghost: bad TTL", errCodeTTL},
		} {
			code, rep := gw.do(t, n, tc.method, tc.cmd, tc.body)
			if code != tc.code || rep.Status != 0 || rep.Error != tc.errCode || !strings.HasPrefix(rep.Message, tc.message) {
				t.Errorf("%s: HTTP %d %+v; want HTTP %d, Status 0, Message %q..., Error %q", tc.name, code, rep, tc.code, tc.message, tc.errCode)
			}
		}
		if _, err := n.Get(ctx, "k"); !errors.Is(err, ErrCacheMiss) {
			t.Errorf("a refused request stored something: %v", err)
		}
	})

	t.Run("body over the limit is refused unread", func(t *testing.T) {
		// The client announces a gigabyte and sends none of it: the answer
		// comes at once.
		conn := rawConn(t, c.nodes[1])
		fmt.Fprintf(conn, "POST /put HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", 1<<30)
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		req, _ := http.NewRequest(http.MethodPost, "/put", nil)
		resp, err := http.ReadResponse(bufio.NewReader(conn), req)
		if err != nil {
			t.Fatal(err)
		}
		if rep := readReply(t, resp); resp.StatusCode != 413 || rep.Error != errCodeTooLarge {
			t.Errorf("announced body over the limit: HTTP %d %+v; want 413 and %s", resp.StatusCode, rep, errCodeTooLarge)
		}
		// Without a length (chunked), the body is read up to the limit only.
		body := sdkBody("k", strings.Repeat("x", int(c.nodes[1].gateway.bodyLimit)), -1)
		resp, err = gw.hc.Post("http://"+c.nodes[1].Addr()+"/put", "application/json", io.MultiReader(strings.NewReader(body)))
		if err != nil {
			t.Fatal(err)
		}
		if rep := readReply(t, resp); resp.StatusCode != 413 || rep.Error != errCodeTooLarge {
			t.Errorf("chunked body over the limit: HTTP %d %+v; want 413 and %s", resp.StatusCode, rep, errCodeTooLarge)
		}
	})

	t.Run("a stalled client holds up no one", func(t *testing.T) {
		n := c.nodes[2]
		halfHeader := rawConn(t, n)
		fmt.Fprint(halfHeader, "POST /put HTTP/1.1\r\nHost: x\r\nContent-Le")
		halfBody := rawConn(t, n)
		fmt.Fprint(halfBody, "POST /put HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"Gobj\": {\"Key\": \"sta")
		for i, owner := range c.nodes {
			key := c.keyOwnedBy(owner, "beside-stalled")
			expect(t, "put", gw.post(t, n, "put", sdkBody(key, i, -1)), 1, "STORED")
			rep := gw.post(t, n, "get", sdkBody(key, nil, nil))
			if expect(t, "get", rep, 1, "OK"); !sameJSON(t, rep.Gobj.Value, fmt.Sprint(i)) {
				t.Errorf("get %s: %s", key, rep.Gobj.Value)
			}
		}
	})
}

func TestHTTPTTL(t *testing.T) {
	c := newCluster(t, 3, true, func(cfg *Config) { cfg.DefaultTTL = time.Second })
	gw := newGatewayClient(t)
	web, owner := c.nodes[0], c.nodes[1]
	cases := []struct {
		name    string
		body    func(key string) string
		expires bool
	}{
		{"TTL 1", func(k string) string { return sdkBody(k, "v", 1) }, true},
		{"TTL 0: the default, 1s", func(k string) string { return sdkBody(k, "v", 0) }, true},
		{"no TTL: the default", func(k string) string { return fmt.Sprintf(`{"Gobj": {"Key": %q, "Value": "v"}}`, k) }, true},
		{"TTL -1", func(k string) string { return sdkBody(k, "v", -1) }, false},
		{"TTL 3600", func(k string) string { return sdkBody(k, "v", 3600) }, false},
	}
	keys := make([]string, len(cases))
	for i, tc := range cases {
		keys[i] = c.keyOwnedBy(owner, fmt.Sprint("ttl", i))
		cmd := "put"
		if i%2 == 1 {
			cmd = "add"
		}
		expect(t, tc.name, gw.post(t, web, cmd, tc.body(keys[i])), 1, "STORED")
	}
	waitFor(t, 10*time.Second, func() error {
		for i, tc := range cases {
			if rep := gw.post(t, c.nodes[2], "get", sdkBody(keys[i], nil, nil)); tc.expires && rep.Message != "CACHE_MISS" {
				return fmt.Errorf("%s: still %s", tc.name, rep.Message)
			}
		}
		return nil
	})
	for i, tc := range cases {
		rep := gw.post(t, web, "get", sdkBody(keys[i], nil, nil))
		_, err := owner.Get(context.Background(), keys[i])
		if tc.expires != (rep.Message == "CACHE_MISS") || tc.expires != errors.Is(err, ErrCacheMiss) {
			t.Errorf("%s: HTTP %s, Go %v; expired %v", tc.name, rep.Message, err, tc.expires)
		}
	}
}

func TestHTTPFlushError(t *testing.T) {
	// Failures go unnoticed for the length of the test, so a halted node
	// stays in the ring and the flush must reach it.
	c := newCluster(t, 3, true, func(cfg *Config) {
		cfg.Gossip = func(mc *memberlist.Config) {
			testGossip(mc)
			mc.ProbeInterval = time.Hour
		}
	})
	gw := newGatewayClient(t)
	for i, n := range c.nodes {
		if err := n.Put(context.Background(), c.keyOwnedBy(n, "flushed"), i, NoExpiry); err != nil {
			t.Fatal(err)
		}
	}
	c.nodes[2].halt()
	rep := gw.post(t, c.nodes[0], "flush", sdkBody("", nil, nil))
	if expect(t, "flush", rep, 0, "ERR_FLUSH"); rep.Error != errCodeFlush {
		t.Errorf("flush: Error %q, want %q", rep.Error, errCodeFlush)
	}
	// The nodes that answered were flushed all the same.
	for _, n := range c.nodes[:2] {
		if rep := gw.post(t, n, "nodeSize", ""); !sameJSON(t, rep.Gobj.Value, "0") {
			t.Errorf("%s holds %s pairs after flush", n.Addr(), rep.Gobj.Value)
		}
	}
}

func TestHTTPDisabled(t *testing.T) {
	c := newCluster(t, 1, true, func(cfg *Config) { cfg.DisableHTTP = true })
	n := c.nodes[0]
	resp, err := newGatewayClient(t).hc.Post("http://"+n.Addr()+"/ping", "application/json", strings.NewReader("{}"))
	if err == nil {
		resp.Body.Close()
		t.Fatalf("HTTP with DisableHTTP: HTTP %d, want the connection dropped", resp.StatusCode)
	}
	if err := n.Put(context.Background(), "k", 1, NoExpiry); err != nil {
		t.Fatalf("the Go API with DisableHTTP: %v", err)
	}
}

// httpServerGoroutines counts goroutines serving HTTP connections.
func httpServerGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return bytes.Count(buf[:n], []byte("net/http.(*conn).serve("))
		}
		buf = make([]byte, 2*len(buf))
	}
}

func TestHTTPCloseEndsConnections(t *testing.T) {
	before := httpServerGoroutines()
	c := newCluster(t, 3, true)
	gw := newGatewayClient(t)
	n := c.nodes[0]
	// A kept-alive idle connection, a stalled one, and one mid-body.
	expect(t, "ping", gw.post(t, n, "ping", ""), 1, "OK")
	stalled := []net.Conn{rawConn(t, n), rawConn(t, n)}
	fmt.Fprint(stalled[0], "GET /pi")
	fmt.Fprint(stalled[1], "POST /put HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
	waitFor(t, 5*time.Second, func() error {
		if got := httpServerGoroutines() - before; got < 3 {
			return fmt.Errorf("%d connections served, want 3", got)
		}
		return nil
	})
	start := time.Now()
	for _, n := range c.nodes {
		n.Close()
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %v with HTTP clients connected", d)
	}
	// Close has waited for the connections' goroutines; they may still be
	// returning.
	waitFor(t, 2*time.Second, func() error {
		if got := httpServerGoroutines(); got > before {
			return fmt.Errorf("%d HTTP connection goroutines left after Close, %d before", got, before)
		}
		return nil
	})
	// The node has closed the stalled connections.
	for i, conn := range stalled {
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.ReadAll(conn); errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("stalled connection %d still open after Close", i)
		}
	}
}

// FuzzGatewayBody feeds the gateway's body decoder what an HTTP client
// could send, and takes what it accepts through the path of a value: JSON
// to msgpack, the owner's check, msgpack back to a reply. The seeds
// include the JSON forms of attacks 1 and 3 of issue 7. Run it for a while
// with
//
//	go test -run='^$' -fuzz='^FuzzGatewayBody$' -fuzztime=10m -parallel=1 .
func FuzzGatewayBody(f *testing.F) {
	for _, seed := range []string{
		"",
		sdkBody("stock:AMZN", map[string]any{"price": 3112.5, "tags": []any{"a", nil, true}}, 300),
		sdkBody("k", 1e308, -1),
		sdkBody(7, "not a string key", 0),
		`{"Gobj":{"Key":"k","Value":` + strings.Repeat("[", MaxValueDepth+1) + strings.Repeat("]", MaxValueDepth+1) + `}}`, // attack 3
		`{"Gobj":{"Key":"k","Value":` + strings.Repeat("[", MaxValueDepth-2) + strings.Repeat("]", MaxValueDepth-2) + `}}`,
		`{"Gobj":{"Key":"k","Value":"\xdd\xff\xff\xff\xff"}}`,              // attack 1's bytes as a string
		`{"Gobj":{"Key":"k","Value":{"\xdf\xf8":[1,2,{"a":-0.0e-400}]}}} `, // attack 1's map
		`{"Gobj":{"Key":"k","Value":123456789012345678901234567890,"TTL":1e3}}`,
		`{"Gobj":{}} {"Gobj":{}}`,
		`{"Gobj":{"Key":"k\ud800","TTL":"10"}}`,
	} {
		f.Add([]byte(seed))
	}
	g := &gateway{bodyLimit: 1<<20 + bodyHeadroom}
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest(http.MethodPost, "/put", bytes.NewReader(body))
		var req gatewayRequest
		if _, err := g.decode(httptest.NewRecorder(), r, &req); err != nil {
			return
		}
		_, _ = req.Gobj.key()
		_, _, _ = ttlOf(req.Gobj.TTL)
		raw, err := msgpack.Marshal(fromJSON(req.Gobj.Value))
		if err != nil {
			t.Fatalf("a JSON value does not encode: %v", err)
		}
		// encoding/json's depth limit keeps every value it accepts within
		// MaxValueDepth.
		if err := checkValue(raw); err != nil {
			t.Fatalf("the owner would refuse a value the gateway accepted: %v", err)
		}
		v, err := decodeValue(raw)
		if err != nil {
			t.Fatalf("a stored value does not decode: %v", err)
		}
		if _, err := json.Marshal(gatewayReply{Gobj: gobjOut{Value: jsonSafe(v)}}); err != nil {
			t.Fatalf("the reply to a get cannot be written: %v", err)
		}
	})
}
