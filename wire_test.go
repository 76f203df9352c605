package ghost

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"reflect"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"golang.org/x/sync/semaphore"
)

// frameOf puts body in a frame.
func frameOf(body []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

// The 17-byte frames of attack 2 of issue 7: a length inside the frame
// claims about 4 GiB.
var hugeLengthFrames = map[string][]byte{
	"key of 4 GiB":     frameOf([]byte("\x95\x01\x02\xdb\xff\xff\xff\xffkey..")),
	"value of 4 GiB":   frameOf([]byte("\x95\x01\x02\xa1k\xc6\xff\xff\xff\xfeval")),
	"bin key of 4 GiB": frameOf([]byte("\x95\x01\x01\xc6\xff\xff\xff\xffkey..")),
	"4 G fields":       frameOf([]byte("\xdd\xff\xff\xff\xff\x01\x02\xa1k\xc0\x00\x00\x00")),
}

func TestRequestsAndResponsesRoundTrip(t *testing.T) {
	a := &appender{}
	enc := msgpack.NewEncoder(a)
	reqs := []request{
		{id: 1, op: OpGet, key: "k"},
		{id: math.MaxUint64, op: OpPut, key: "ключ", value: []byte{0xc0}, ttl: int64(NoExpiry)},
		{id: 1 << 40, op: OpAdd, key: "k", value: make([]byte, 70000), ttl: math.MaxInt64},
	}
	for i := range reqs {
		encodeRequest(a, enc, &reqs[i])
	}
	resps := []response{{id: 7, status: statusMiss}, {id: 8, status: statusBadValue, value: []byte("v"), msg: "why"}}
	for i := range resps {
		encodeResponse(a, enc, &resps[i])
	}
	f := newFrameReader(noDeadline{}, bufio.NewReaderSize(bytes.NewReader(a.b), 32<<10), 1<<20, 0)
	for _, want := range reqs {
		var got request
		r, err := f.next()
		if err == nil {
			err = decodeRequest(r, &got)
		}
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("request %+v came back as %+v, %v", want, got, err)
		}
	}
	for _, want := range resps {
		var got response
		r, err := f.next()
		if err == nil {
			err = decodeResponse(r, &got)
		}
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("response %+v came back as %+v, %v", want, got, err)
		}
	}
	if _, err := f.next(); err != io.EOF {
		t.Fatalf("past the last frame: %v", err)
	}
}

// noDeadline stands for a connection when frames come from memory.
type noDeadline struct{}

func (noDeadline) SetReadDeadline(time.Time) error { return nil }

// Attack 2: frames whose inner lengths claim 4 GiB; the decoder allocated
// what they claimed, and 114 of them took a node to 24 GB.
func TestFrameLengthsInsideTheFrame(t *testing.T) {
	c := newCluster(t, 2, true)
	target := c.nodes[1]
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range 50 {
		for name, frame := range hugeLengthFrames {
			conn, br := dialCache(t, target.Addr())
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := conn.Write(frame); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			// The node closes the connection, having answered nothing.
			if n, err := io.Copy(io.Discard, br); err != nil || n != 0 {
				t.Fatalf("%s: the node sent %d bytes and %v, want a close", name, n, err)
			}
			conn.Close()
		}
	}
	runtime.ReadMemStats(&after)
	// Each connection costs its buffers; none may cost what a length claims.
	t.Logf("200 attacks: %d KiB allocated in all", (after.TotalAlloc-before.TotalAlloc)>>10)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
		t.Fatalf("200 frames of 17 bytes made the process allocate %d MiB", grew>>20)
	}
	c.checkServes("after-lengths")
}

func TestResponseLengthsInsideTheFrame(t *testing.T) {
	for name, frame := range map[string][]byte{
		"value of 4 GiB":   frameOf([]byte("\x94\x01\x00\xc6\xff\xff\xff\xff\xa0")),
		"message of 4 GiB": frameOf([]byte("\x94\x01\x00\xc0\xdb\xff\xff\xff\xff")),
	} {
		f := newFrameReader(noDeadline{}, bufio.NewReader(bytes.NewReader(frame)), 1<<20, 0)
		r, err := f.next()
		if err != nil {
			t.Fatal(err)
		}
		var resp response
		if err := decodeResponse(r, &resp); err == nil {
			t.Fatalf("%s: decoded", name)
		}
	}
}

// FuzzFrames feeds the frame reader and the request and response decoders
// a stream as a peer could send it after the handshake. The seeds include
// the inputs of the six attacks of issue 7 that travel in frames. Run it
// for a while with
//
//	go test -run='^$' -fuzz='^FuzzFrames$' -fuzztime=10m -parallel=1 .
func FuzzFrames(f *testing.F) {
	put := func(key string, value []byte) []byte {
		return requestFrame(&request{id: 1, op: OpPut, key: key, value: value, ttl: int64(NoExpiry)})
	}
	for _, frame := range hugeLengthFrames { // attack 2
		f.Add(frame)
	}
	f.Add(put("array", hugeArrayValue))    // attack 1
	f.Add(put("map", hugeMapValue))        // attack 1
	f.Add(put("deep", deepValue))          // attack 3
	f.Add(put("big", make([]byte, 1<<20))) // attack 5: a 1 MiB put, then silence
	f.Add([]byte{})                        // attack 4: a connection opened and dropped
	f.Add(frameOf([]byte{0x95, 0x01})[:6]) // attack 6: a frame begun and never finished
	f.Add(append(put("a", []byte{1}), 0, 0, 0, 1, 0xc1))
	f.Add(append(requestFrame(&request{id: 2, op: OpGet, key: "k"}), requestFrame(&request{id: 3, op: OpPing})...))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}) // a frame over the limit
	f.Fuzz(func(t *testing.T, stream []byte) {
		const maxFrame = 1<<20 + 64<<10
		frames := newFrameReader(noDeadline{}, bufio.NewReaderSize(bytes.NewReader(stream), 32<<10), maxFrame, 0)
		for {
			body, err := frames.next()
			if err != nil {
				return
			}
			frame := body.b
			var req request
			if decodeRequest(body, &req) == nil {
				if len(req.key)+len(req.value) > len(frame) {
					t.Fatalf("a frame of %d bytes decoded to %d", len(frame), len(req.key)+len(req.value))
				}
				again := requestFrame(&req)
				var back request
				if err := decodeRequest(&msgReader{b: again[4:]}, &back); err != nil || !sameRequest(back, req) {
					t.Fatalf("request %+v re-encoded came back as %+v, %v", req, back, err)
				}
				_, _ = decodeValue(req.value)
			}
			var resp response
			if decodeResponse(&msgReader{b: frame}, &resp) == nil && len(resp.value)+len(resp.msg) > len(frame) {
				t.Fatalf("a frame of %d bytes decoded to %d", len(frame), len(resp.value)+len(resp.msg))
			}
		}
	})
}

func sameRequest(a, b request) bool {
	return a.id == b.id && a.op == b.op && a.key == b.key && bytes.Equal(a.value, b.value) && a.ttl == b.ttl
}

// writeHook is a connection whose Write calls a hook first: a sender that
// adds to the queue while the flusher writes.
type writeHook struct {
	net.Conn
	hook    func()
	written []byte
}

func (w *writeHook) Write(p []byte) (int, error) {
	w.hook()
	w.written = append(w.written, p...)
	return len(p), nil
}

func (w *writeHook) SetWriteDeadline(time.Time) error { return nil }

// A queue drained while senders add to it writes exactly what they added,
// in order, whatever the sizes: a buffer that a large frame grew, and
// dropped, once let the next write go out of the buffer being filled.
func TestOutQueueWritesWhatWasQueued(t *testing.T) {
	var mu sync.Mutex
	var q outQueue
	var want []byte
	next := byte(1)
	push := func(n int) {
		b := bytes.Repeat([]byte{next}, n)
		next++
		q.out.b = append(q.out.b, b...)
		want = append(want, b...)
	}
	sizes := []int{10, keepOut + 1, 10, 10, keepOut * 2, 10, 10}
	conn := &writeHook{}
	conn.hook = func() {
		mu.Lock()
		defer mu.Unlock()
		if len(sizes) > 0 {
			push(sizes[0])
			sizes = sizes[1:]
		}
	}
	mu.Lock()
	push(10)
	err := q.drainLocked(&mu, conn, false)
	mu.Unlock()
	if err != nil || len(sizes) != 0 {
		t.Fatalf("drain: %v, %d sends left", err, len(sizes))
	}
	if !bytes.Equal(conn.written, want) {
		t.Fatalf("wrote %d bytes unlike the %d queued", len(conn.written), len(want))
	}
}

// The metrics payload is what it was before the stats were typed:
// [[UnixNano, {figure: value}], ...], read back into the kind asked for;
// and the payload of a node of that time still decodes.
func TestSamplesWireFormat(t *testing.T) {
	at := time.Unix(0, 1764057810100000000)
	w := WatchdogStats{TotalRequests: 3, GetRequests: 2, TableVersion: 7}
	b := encodeSamples([]Sample{{Time: at, Watchdog: &w}})
	var raw [][2]any
	if err := msgpack.Unmarshal(b, &raw); err != nil || len(raw) != 1 {
		t.Fatalf("%x: %v", b, err)
	}
	figures, ok := raw[0][1].(map[string]any)
	if !ok || len(figures) != reflect.TypeFor[WatchdogStats]().NumField() || fmt.Sprint(figures["GetRequests"]) != "2" {
		t.Errorf("figures %#v", raw[0][1])
	}
	var got []Sample
	if err := decodeSamples(b, OpWatchdogMetrics, &got); err != nil || len(got) != 1 || *got[0].Watchdog != w || !got[0].Time.Equal(at) {
		t.Fatalf("decoded %+v, %v", got, err)
	}

	// As the node encoded it with Sample.Values, a map[string]int64.
	old, err := msgpack.Marshal([][2]any{{at.UnixNano(), map[string]int64{"Keys": 5, "Bytes": 60, "Alloc": 1 << 40}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := decodeSamples(old, OpSnitchMetrics, &got); err != nil || len(got) != 1 || got[0].Watchdog != nil {
		t.Fatalf("decoded %+v, %v", got, err)
	}
	if s := got[0].Snitch; s.Keys != 5 || s.Bytes != 60 || s.Alloc != 1<<40 || s.Goroutines != 0 {
		t.Errorf("snitch %+v", *s)
	}
}

// Frames larger than the read buffer take room from the node's budget
// while they are held, and give it back at the next frame or when the
// reader closes; a frame that finds no room waits for it.
func TestFrameBudget(t *testing.T) {
	frame := func(size int) []byte {
		b := make([]byte, 4+size)
		binary.BigEndian.PutUint32(b, uint32(size))
		return b
	}
	budget := &frameBudget{sem: semaphore.NewWeighted(100), size: 100}
	stream := append(append(frame(80), frame(8)...), frame(60)...)
	a := newFrameReader(noDeadline{}, bufio.NewReaderSize(bytes.NewReader(stream), 16), 1000, 0)
	a.budget = budget
	if _, err := a.next(); err != nil {
		t.Fatal(err)
	}
	if got := budget.bytes.Load(); got != 80 {
		t.Fatalf("held %d bytes after an 80-byte frame, want 80", got)
	}
	// Another connection's 60-byte frame waits for the room.
	b := newFrameReader(noDeadline{}, bufio.NewReaderSize(bytes.NewReader(frame(60)), 16), 1000, 0)
	b.budget = budget
	got := make(chan error, 1)
	go func() {
		_, err := b.next()
		got <- err
	}()
	waitFor(t, 10*time.Second, func() error {
		if budget.waits.Load() != 1 {
			return errors.New("the second frame did not wait")
		}
		return nil
	})
	if _, err := a.next(); err != nil { // 8 bytes: fits the buffer, takes nothing
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("the waiting frame: %v", err)
	}
	if held := budget.bytes.Load(); held != 60 {
		t.Errorf("held %d bytes, want the waiting frame's 60", held)
	}
	b.close()
	a.close()
	if held := budget.bytes.Load(); held != 0 {
		t.Errorf("held %d bytes after both readers closed", held)
	}
}
