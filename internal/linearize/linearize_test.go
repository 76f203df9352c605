package linearize

import (
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

func TestCheck(t *testing.T) {
	type call struct {
		client    int
		in        Input
		call, ret int64
		out       Output
	}
	put := func(v string) Input { return Input{Kind: Put, Key: "k", Value: v} }
	add := func(v string) Input { return Input{Kind: Add, Key: "k", Value: v} }
	get := Input{Kind: Get, Key: "k"}
	del := Input{Kind: Delete, Key: "k"}
	hit := func(v string) Output { return Output{Done: true, Value: v} }
	done, notDone, failed := Output{Done: true}, Output{}, Output{Unknown: true}
	for _, tc := range []struct {
		name  string
		calls []call
		want  porcupine.CheckResult
	}{
		{"a read after a put sees it", []call{{0, put("a"), 0, 10, done}, {1, get, 20, 30, hit("a")}}, porcupine.Ok},
		{"a read after a put misses", []call{{0, put("a"), 0, 10, done}, {1, get, 20, 30, notDone}}, porcupine.Illegal},
		{"a read during a put may miss", []call{{0, put("a"), 0, 30, done}, {1, get, 10, 20, notDone}}, porcupine.Ok},
		{"a failed put may show later", []call{{0, put("a"), 0, 10, failed}, {1, get, 50, 60, hit("a")}}, porcupine.Ok},
		{"a failed put may never show", []call{{0, put("a"), 0, 10, failed}, {1, get, 50, 60, notDone}}, porcupine.Ok},
		{"a failed read says nothing", []call{{0, put("a"), 0, 10, done}, {1, get, 20, 30, failed}}, porcupine.Ok},
		{"an add on an empty key stores", []call{{0, add("a"), 0, 10, done}, {1, get, 20, 30, hit("a")}}, porcupine.Ok},
		{"an add on an empty key is not refused", []call{{0, add("a"), 0, 10, notDone}}, porcupine.Illegal},
		{"an add on a held key is refused", []call{{0, put("a"), 0, 10, done}, {1, add("b"), 20, 30, notDone}, {1, get, 40, 50, hit("a")}}, porcupine.Ok},
		{"an add on a held key does not store", []call{{0, put("a"), 0, 10, done}, {1, add("b"), 20, 30, done}}, porcupine.Illegal},
		{"a delete of a held key removes it", []call{{0, put("a"), 0, 10, done}, {1, del, 20, 30, done}, {0, get, 40, 50, notDone}}, porcupine.Ok},
		{"a delete of a held key finds it", []call{{0, put("a"), 0, 10, done}, {1, del, 20, 30, notDone}}, porcupine.Illegal},
		{"two readers disagree on the order", []call{
			{0, put("a"), 0, 100, done}, {1, put("b"), 0, 100, done},
			{2, get, 10, 20, hit("a")}, {2, get, 30, 40, hit("b")},
			{3, get, 50, 60, hit("a")},
		}, porcupine.Illegal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h History
			for _, c := range tc.calls {
				h.Add(c.client, c.in, c.call, c.ret, c.out)
			}
			v := h.Check(10 * time.Second)
			if v.Result != tc.want {
				t.Fatalf("%s, want %s", v, tc.want)
			}
			if tc.want == porcupine.Illegal && (v.Key != "k" || !strings.Contains(v.Excerpt, "client")) {
				t.Errorf("illegal history reported as key %q, excerpt %q", v.Key, v.Excerpt)
			}
		})
	}
}

func TestWriteReport(t *testing.T) {
	var h History
	h.Add(0, Input{Kind: Put, Key: "k", Value: "a"}, 0, 10, Output{Done: true})
	h.Add(1, Input{Kind: Get, Key: "k"}, 20, 30, Output{})
	v := h.Check(10 * time.Second)
	path, err := v.WriteReport(t.TempDir(), "history")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(path, "history.txt") {
		t.Errorf("report at %s", path)
	}
}
