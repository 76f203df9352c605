package ghost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// The HTTP gateway speaks the original GhostDB HTTP/JSON protocol on the
// node's one port, so that the original SDKs (and curl) can use any node:
//
//	POST /<command>  {"Gobj": {"Key": ..., "Value": ..., "TTL": ...}}
//	200              {"Gobj": {"Key", "Value", "TTL"}, "Status", "Message", "Error"}
//
// A connection whose first byte is an ASCII letter (the first letter of an
// HTTP method) is handed to one http.Server per node, through a listener fed
// by a channel. Every command goes through the node's Go API, so routing,
// TTL, eviction and metrics are those of a Go caller.

// Limits on HTTP clients, so that slow or stalled ones cannot hold the node's
// resources for long.
const (
	httpHeaderTimeout  = 10 * time.Second // to send the request headers
	httpReadTimeout    = 30 * time.Second // to send the whole request
	httpWriteTimeout   = 30 * time.Second // to run the command and take the reply
	httpMaxHeaderBytes = 32 << 10

	// bodyHeadroom is what a request body may hold beyond Config.MaxValueSize:
	// the key, the TTL, the envelope and JSON's longer spelling of values.
	// Values whose JSON is longer still are refused with HTTP 413.
	bodyHeadroom = 64 << 10
)

// The Error codes of replies that carry no GhostDB outcome word.
const (
	errCodeCommand  = "INVALID_COMMAND_ERR"
	errCodeJSON     = "INVALID_JSON_ERR"
	errCodeTooLarge = "VALUE_TOO_LARGE_ERR"
	errCodeMethod   = "METHOD_NOT_ALLOWED_ERR"
	errCodeKey      = "KEY_ERR"
	errCodeTTL      = "TTL_ERR"
	errCodeFlush    = "FLUSH_ERR"
	errCodeServers  = "NO_MORE_SERVERS_ERR"
	errCodeClosed   = "NODE_CLOSED_ERR"
	errCodeValue    = "VALUE_ERR"
	errCodeServer   = "SERVER_ERR"
)

// errTTL: a request's TTL is not -1, 0 or a positive whole number of seconds.
var errTTL = errors.New("ghost: bad TTL")

// gateway is a node's HTTP server and the listener that feeds it.
type gateway struct {
	n         gatewayNode
	cfg       Config
	addr      string           // the node's, for the listener's Addr
	log       *slog.Logger     // the node's
	tracker   goroutineTracker // counts each connection's goroutine, so shutdown waits for it
	srv       *http.Server
	conns     chan net.Conn // connections handed over by dispatch
	stop      chan struct{} // closed when the listener closes
	stopOnce  sync.Once
	bodyLimit int64
	pages     *pages // /metrics, /dashboard
}

// gatewayNode is what the gateway uses of its node: the calls of the
// original protocol, and what its pages and its refusals need.
type gatewayNode interface {
	Get(ctx context.Context, key string) (Item, error)
	Put(ctx context.Context, key string, value any, ttl time.Duration) error
	Add(ctx context.Context, key string, value any, ttl time.Duration) error
	Delete(ctx context.Context, key string) error
	Flush(ctx context.Context) error
	ForceQuorum(ctx context.Context) error
	localSamples(op Op) []Sample
	pairCount() int64
	memberView() []memberInfo
	refusePeer(remote, reason string, err error)
}

// goroutineTracker counts goroutines that shutdown waits for: a
// sync.WaitGroup, or the node's.
type goroutineTracker interface {
	Add(delta int)
	Done()
}

// newGateway starts n's HTTP server. Each connection it serves counts in
// n.wg from hand-over to the end of its goroutine, so shutdown waits for it.
func newGateway(n *Node) *gateway {
	return startGateway(n, n.cfg, n.addr, n.log, &n.wg, newPages(n), n.goBackground)
}

// startGateway starts the HTTP server of node, whose connections it counts
// in tracker; start runs its accept loop.
func startGateway(node gatewayNode, cfg Config, addr string, log *slog.Logger, tracker goroutineTracker, pages *pages, start func(func())) *gateway {
	g := &gateway{
		n:         node,
		cfg:       cfg,
		addr:      addr,
		log:       log,
		tracker:   tracker,
		conns:     make(chan net.Conn),
		stop:      make(chan struct{}),
		bodyLimit: int64(cfg.MaxValueSize) + bodyHeadroom,
		pages:     pages,
	}
	g.srv = &http.Server{
		Handler:           g,
		ReadHeaderTimeout: httpHeaderTimeout,
		ReadTimeout:       httpReadTimeout,
		WriteTimeout:      httpWriteTimeout,
		IdleTimeout:       cfg.IdleTimeout, // between requests on a kept-alive connection
		MaxHeaderBytes:    httpMaxHeaderBytes,
		// net/http would otherwise write to the standard logger.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		// StateClosed (or StateHijacked) is the last thing a connection's
		// goroutine does.
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateClosed || s == http.StateHijacked {
				tracker.Done()
			}
		},
	}
	start(func() { _ = g.srv.Serve(gatewayListener{g}) })
	return g
}

// handOff gives the HTTP server a connection whose first byte dispatch has
// already read. The caller must be counted in n.wg, so that the count here
// never rises from zero while shutdown waits.
func (g *gateway) handOff(conn net.Conn, first byte) {
	g.tracker.Add(1)
	select {
	case g.conns <- &prefixConn{Conn: conn, first: first}:
	case <-g.stop:
		conn.Close()
		g.tracker.Done()
	}
}

// close closes the listener and every HTTP connection. The connections'
// goroutines end soon after; n.wg waits for them.
func (g *gateway) close() {
	_ = g.srv.Close()
	// The server closes only listeners it has begun to serve: make sure no
	// handOff waits on one it never reached.
	_ = gatewayListener{g}.Close()
}

// gatewayListener is the net.Listener the HTTP server accepts from.
type gatewayListener struct{ g *gateway }

func (l gatewayListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.g.conns:
		return c, nil
	case <-l.g.stop:
		return nil, net.ErrClosed
	}
}

func (l gatewayListener) Close() error {
	l.g.stopOnce.Do(func() { close(l.g.stop) })
	return nil
}

func (l gatewayListener) Addr() net.Addr { return gatewayAddr(l.g.addr) }

type gatewayAddr string

func (a gatewayAddr) Network() string { return "tcp" }
func (a gatewayAddr) String() string  { return string(a) }

// prefixConn gives back the byte dispatch read to tell HTTP from the other
// protocols.
type prefixConn struct {
	net.Conn
	first byte
	given bool
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if !c.given && len(p) > 0 {
		c.given = true
		p[0] = c.first
		return 1, nil
	}
	return c.Conn.Read(p)
}

// isHTTPStart reports whether b can begin an HTTP/1 request: methods are
// upper-case words, and we take any ASCII letter.
func isHTTPStart(b byte) bool { return 'A' <= b && b <= 'Z' || 'a' <= b && b <= 'z' }

// gobjIn is the object of a request. Key stays raw so that a key that is
// not a string is a key error (as GhostKeyError was), not a JSON error.
type gobjIn struct {
	Key   json.RawMessage
	Value any // json.Number for numbers: the decoder uses UseNumber
	TTL   any
}

type gatewayRequest struct{ Gobj gobjIn }

type gobjOut struct {
	Key   string
	Value any
	TTL   int64
}

// gatewayReply is the answer to every request, the original node's shape.
type gatewayReply struct {
	Gobj    gobjOut
	Status  int // 1 success, 0 failure
	Message string
	Error   string
}

// ServeHTTP answers one command, the path naming it, or one of the pages.
func (g *gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !g.authorize(w, r) {
		return
	}
	if g.pages.serve(w, r) {
		return
	}
	name := strings.TrimPrefix(r.URL.Path, "/")
	run := g.command(name)
	if run == nil {
		writeReply(w, http.StatusOK, gatewayReply{
			Message: fmt.Sprintf("Command '%s' is not a recognized command", name),
			Error:   errCodeCommand,
		})
		return
	}
	// SDKs revive a node they marked dead with a GET /ping.
	if r.Method != http.MethodPost && !(r.Method == http.MethodGet && name == "ping") {
		w.Header().Set("Allow", http.MethodPost)
		writeReply(w, http.StatusMethodNotAllowed, gatewayReply{
			Message: fmt.Sprintf("method %s not allowed: use POST", r.Method),
			Error:   errCodeMethod,
		})
		return
	}
	var req gatewayRequest
	if status, err := g.decode(w, r, &req); err != nil {
		code := errCodeJSON
		if status == http.StatusRequestEntityTooLarge {
			code = errCodeTooLarge
		}
		writeReply(w, status, gatewayReply{Message: err.Error(), Error: code})
		return
	}
	writeReply(w, http.StatusOK, run(r.Context(), &req.Gobj))
}

// decode reads the request body into req, refusing bodies over the limit
// before reading them whole. An empty body is an empty request, so that
// `curl -X POST .../flush` works.
func (g *gateway) decode(w http.ResponseWriter, r *http.Request, req *gatewayRequest) (int, error) {
	if r.ContentLength > g.bodyLimit {
		return http.StatusRequestEntityTooLarge, fmt.Errorf("request body of %d bytes exceeds the limit of %d", r.ContentLength, g.bodyLimit)
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, g.bodyLimit))
	dec.UseNumber()
	err := dec.Decode(req)
	if errors.Is(err, io.EOF) {
		return 0, nil // no body
	}
	if err == nil {
		// One JSON value, and nothing after it.
		if _, err = dec.Token(); errors.Is(err, io.EOF) {
			return 0, nil
		}
		if err == nil {
			err = errors.New("data after the JSON value")
		}
	}
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return http.StatusRequestEntityTooLarge, fmt.Errorf("request body exceeds the limit of %d bytes", tooLarge.Limit)
	}
	return http.StatusUnprocessableEntity, fmt.Errorf("invalid JSON request: %w", err)
}

// command returns the function that runs the named command, or nil.
func (g *gateway) command(name string) func(context.Context, *gobjIn) gatewayReply {
	switch name {
	case "get":
		return g.get
	case "put":
		return func(ctx context.Context, in *gobjIn) gatewayReply { return g.store(ctx, OpPut, in) }
	case "add":
		return func(ctx context.Context, in *gobjIn) gatewayReply { return g.store(ctx, OpAdd, in) }
	case "delete":
		return g.delete
	case "flush":
		return g.flush
	case "nodeSize":
		return g.nodeSize
	case "ping":
		return g.ping
	case "members":
		return g.members
	case "getSnitchMetrics", "getSysMetrics":
		return func(context.Context, *gobjIn) gatewayReply { return g.metrics(OpSnitchMetrics) }
	case "getWatchdogMetrics", "getAppMetrics":
		return func(context.Context, *gobjIn) gatewayReply { return g.metrics(OpWatchdogMetrics) }
	case "forceQuorum":
		return g.forceQuorum
	}
	return nil
}

// forceQuorum is Node.ForceQuorum, for an operator's ghostctl: a command
// of GhostDB for Go, not of the original protocol.
func (g *gateway) forceQuorum(ctx context.Context, _ *gobjIn) gatewayReply {
	if err := g.n.ForceQuorum(ctx); err != nil {
		return gatewayReply{Message: err.Error(), Error: errorCode(err)}
	}
	return gatewayReply{Status: 1, Message: "OK"}
}

func (g *gateway) get(ctx context.Context, in *gobjIn) gatewayReply {
	key, err := in.key()
	if err != nil {
		return reply(OpGet, key, err)
	}
	it, err := g.n.Get(ctx, key)
	rep := reply(OpGet, key, err)
	if err == nil {
		rep.Gobj.Value = jsonSafe(it.Value)
	}
	return rep
}

func (g *gateway) store(ctx context.Context, op Op, in *gobjIn) gatewayReply {
	key, err := in.key()
	if err != nil {
		return reply(op, key, err)
	}
	seconds, ttl, err := ttlOf(in.TTL)
	if err != nil {
		return reply(op, key, err)
	}
	value := fromJSON(in.Value)
	if op == OpAdd {
		err = g.n.Add(ctx, key, value, ttl)
	} else {
		err = g.n.Put(ctx, key, value, ttl)
	}
	rep := reply(op, key, err)
	rep.Gobj.TTL = seconds
	return rep
}

func (g *gateway) delete(ctx context.Context, in *gobjIn) gatewayReply {
	key, err := in.key()
	if err == nil {
		err = g.n.Delete(ctx, key)
	}
	return reply(OpDelete, key, err)
}

// flush empties the whole cluster, as the SDKs' flush (which visited every
// node) did.
func (g *gateway) flush(ctx context.Context, _ *gobjIn) gatewayReply {
	err := g.n.Flush(ctx)
	if err != nil {
		g.log.Debug("ghost: flush over HTTP failed", "err", err)
	}
	return reply(OpFlush, "", err)
}

// nodeSize, ping and the metrics answer for this node only: the SDKs ask
// each node in turn.
func (g *gateway) nodeSize(context.Context, *gobjIn) gatewayReply {
	rep := reply(OpGet, "", nil) // "OK", as for any read
	rep.Gobj.Value = g.n.pairCount()
	return rep
}

func (g *gateway) ping(context.Context, *gobjIn) gatewayReply { return reply(OpPing, "", nil) }

func (g *gateway) metrics(op Op) gatewayReply {
	rep := reply(op, "", nil)
	rep.Gobj.Value = g.n.localSamples(op)
	return rep
}

// reply is the answer for the outcome err of op on key, in GhostDB's words.
func reply(op Op, key string, err error) gatewayReply {
	rep := gatewayReply{Gobj: gobjOut{Key: key}, Message: Message(op, err)}
	if err == nil {
		rep.Status = 1
	} else {
		rep.Error = errorCode(err)
	}
	return rep
}

// errorCode is the Error of a failed reply. The ordinary outcomes of a
// cache (CACHE_MISS, NOT_STORED, NOT_FOUND) are answers, not errors, and
// have none, as in the original node.
func errorCode(err error) string {
	switch {
	case errors.Is(err, ErrCacheMiss), errors.Is(err, ErrNotStored), errors.Is(err, ErrNotFound):
		return ""
	case errors.Is(err, ErrKey):
		return errCodeKey
	case errors.Is(err, errTTL):
		return errCodeTTL
	case errors.Is(err, ErrValueTooLarge):
		return errCodeTooLarge
	case errors.Is(err, ErrValueTooDeep), errors.Is(err, ErrBadValue):
		return errCodeValue
	case errors.Is(err, ErrFlush):
		return errCodeFlush
	case errors.Is(err, ErrNoMoreServers):
		return errCodeServers
	case errors.Is(err, ErrClosed):
		return errCodeClosed
	}
	return errCodeServer
}

// key is the request's key: missing or null is the empty key, which the Go
// API refuses.
func (in *gobjIn) key() (string, error) {
	raw := in.Key
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	if raw[0] != '"' {
		return "", fmt.Errorf("%w: not a JSON string", ErrKey)
	}
	// The JSON decoder would turn bytes that are not UTF-8 into U+FFFD and
	// so accept, as another key, a key the Go API refuses.
	if !utf8.Valid(raw) {
		return "", fmt.Errorf("%w: not valid UTF-8", ErrKey)
	}
	var key string
	if err := json.Unmarshal(raw, &key); err != nil {
		return "", fmt.Errorf("%w: %w", ErrKey, err)
	}
	return key, nil
}

// ttlOf reads a request's TTL, in seconds: -1 never expires, missing or 0
// means the node's default (0 to the Go API).
func ttlOf(v any) (int64, time.Duration, error) {
	if v == nil {
		return 0, 0, nil
	}
	if num, ok := v.(json.Number); ok {
		s, err := num.Int64()
		switch {
		case err != nil:
		case s == -1:
			return s, NoExpiry, nil
		case s >= 0 && s <= math.MaxInt64/int64(time.Second):
			return s, time.Duration(s) * time.Second, nil
		}
	}
	return 0, 0, fmt.Errorf("%w %v: want -1, 0 or a positive whole number of seconds", errTTL, v)
}

// fromJSON turns the decoder's json.Numbers into Go numbers: int64 for
// integers that fit, float64 for the rest.
func fromJSON(v any) any {
	switch v := v.(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i
		}
		f, _ := v.Float64() // the decoder has checked the syntax; out of range is ±Inf
		return f
	case map[string]any:
		for k, e := range v {
			v[k] = fromJSON(e)
		}
	case []any:
		for i, e := range v {
			v[i] = fromJSON(e)
		}
	}
	return v
}

// jsonSafe makes a value read from the cache encodable as JSON: maps with
// keys other than strings get their keys printed (keys that print alike
// collide), times become RFC 3339 strings in UTC, and floats JSON cannot
// spell (NaN, ±Inf) become strings.
func jsonSafe(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = jsonSafe(e)
		}
		return out
	case map[any]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[fmt.Sprint(k)] = jsonSafe(e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = jsonSafe(e)
		}
		return out
	case time.Time:
		return v.UTC().Format(time.RFC3339Nano)
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return strconv.FormatFloat(v, 'g', -1, 64)
		}
	case float32:
		return jsonSafe(float64(v))
	}
	return v
}

// writeReply writes rep as JSON with the HTTP status code.
func writeReply(w http.ResponseWriter, code int, rep gatewayReply) {
	b, err := json.Marshal(rep)
	if err != nil {
		b, _ = json.Marshal(gatewayReply{
			Gobj:    gobjOut{Key: rep.Gobj.Key},
			Message: "ghost: the value cannot be written as JSON: " + err.Error(),
			Error:   errCodeValue,
		})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}
