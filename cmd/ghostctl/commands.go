package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// outcomeError is a command the cache answered with CACHE_MISS,
// NOT_STORED or NOT_FOUND: an answer, not a failure.
type outcomeError struct{ word string }

func (e outcomeError) Error() string { return e.word }

// runCommand runs the command named by o.args[0].
func runCommand(ctx context.Context, o options, stdout, stderr io.Writer) error {
	addrs, err := o.targets(ctx)
	if err != nil {
		return err
	}
	c := newClient(addrs, o.token, o.timeout)
	defer c.close()
	cmd, args := o.args[0], o.args[1:]
	want := map[string][]string{
		"get": {"KEY"}, "put": {"KEY", "VALUE"}, "add": {"KEY", "VALUE"}, "delete": {"KEY"},
		"flush": nil, "members": nil, "ping": nil, "stats": nil, "top": nil, "force-quorum": nil,
	}
	params, known := want[cmd]
	switch {
	case !known:
		return usagef("unknown command %q", cmd)
	case len(args) != len(params):
		if len(params) == 0 {
			return usagef("%s takes no arguments", cmd)
		}
		return usagef("%s wants %s", cmd, strings.Join(params, " "))
	}
	switch cmd {
	case "get", "delete":
		return keyCommand(ctx, c, o, stdout, cmd, gobj{Key: args[0]})
	case "put", "add":
		return keyCommand(ctx, c, o, stdout, cmd, gobj{Key: args[0], Value: parseValue(args[1]), TTL: o.ttl.seconds})
	case "flush":
		return keyCommand(ctx, c, o, stdout, cmd, gobj{})
	case "force-quorum":
		return forceQuorum(ctx, c, stdout)
	case "members":
		return members(ctx, c, o, stdout)
	case "ping":
		return ping(ctx, c, o, stdout)
	case "stats":
		return stats(ctx, c, o, stdout)
	}
	return top(ctx, c, o, stdout)
}

// forceQuorum asks the node (the first of -addr that answers: name the
// coordinator of the side that is left) to change the table without the
// majority it lost for good (Node.ForceQuorum).
func forceQuorum(ctx context.Context, c *client, stdout io.Writer) error {
	rep, err := c.command(ctx, "forceQuorum", gobj{})
	if err != nil {
		return err
	}
	if rep.Status != 1 {
		return fmt.Errorf("force-quorum: %s", rep.Message)
	}
	fmt.Fprintln(stdout, rep.Message)
	return nil
}

// parseValue is VALUE as it is sent: JSON when it is valid JSON, else a
// string.
func parseValue(s string) any {
	if json.Valid([]byte(s)) {
		return json.RawMessage(s)
	}
	return s
}

// keyCommand runs get, put, add, delete or flush and prints the outcome:
// the value for get, the word for the others.
func keyCommand(ctx context.Context, c *client, o options, stdout io.Writer, name string, obj gobj) error {
	rep, err := c.command(ctx, name, obj)
	if err != nil {
		return err
	}
	if o.json {
		stdout.Write(rep.raw)
	}
	switch {
	case rep.Status == 1:
		if !o.json && name == "get" {
			fmt.Fprintf(stdout, "%s\n", rep.Gobj.Value)
		} else if !o.json {
			fmt.Fprintln(stdout, rep.Message)
		}
		return nil
	case rep.Message == "CACHE_MISS" || rep.Message == "NOT_STORED" || rep.Message == "NOT_FOUND":
		return outcomeError{rep.Message}
	}
	return fmt.Errorf("%s: %s: %s (%s)", c.addrs[c.current], name, rep.Message, rep.Error)
}

// member is an entry of POST /members.
type member struct {
	Addr  string `json:"addr"`
	Name  string `json:"name"`
	Self  bool   `json:"self"`
	State string `json:"state"`
}

func listMembers(ctx context.Context, c *client) ([]member, error) {
	rep, err := c.command(ctx, "members", gobj{})
	if err != nil {
		return nil, err
	}
	var ms []member
	if rep.Status != 1 {
		return nil, fmt.Errorf("%s: members: %s (%s)", c.addrs[c.current], rep.Message, rep.Error)
	}
	if err := json.Unmarshal(rep.Gobj.Value, &ms); err != nil {
		return nil, fmt.Errorf("%s: members: %w", c.addrs[c.current], err)
	}
	return ms, nil
}

func members(ctx context.Context, c *client, o options, stdout io.Writer) error {
	ms, err := listMembers(ctx, c)
	if err != nil {
		return err
	}
	if o.json {
		return printJSON(stdout, ms)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSTATE\tNAME")
	for _, m := range ms {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", marked(m.Addr, m.Self), m.State, m.Name)
	}
	fmt.Fprintf(tw, "%d members, as %s sees them (*)\n", len(ms), c.addrs[c.current])
	return tw.Flush()
}

// pingResult is one member's answer to GET /ping.
type pingResult struct {
	Addr  string  `json:"addr"`
	OK    bool    `json:"ok"`
	Ms    float64 `json:"ms"` // round trip, in milliseconds
	Error string  `json:"error,omitempty"`
}

// ping asks every member for GET /ping, as the SDKs do, from here.
func ping(ctx context.Context, c *client, o options, stdout io.Writer) error {
	ms, err := listMembers(ctx, c)
	if err != nil {
		return err
	}
	results := make([]pingResult, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Go(func() {
			start := time.Now()
			raw, err := c.doAt(ctx, m.Addr, "GET", "/ping", nil)
			r := pingResult{Addr: m.Addr, Ms: float64(time.Since(start).Microseconds()) / 1000}
			var rep reply
			switch {
			case err != nil:
				r.Error = err.Error()
			case json.Unmarshal(raw, &rep) != nil || rep.Status != 1:
				r.Error = fmt.Sprintf("unexpected reply %s", strings.TrimSpace(string(raw)))
			default:
				r.OK = true
			}
			results[i] = r
		})
	}
	wg.Wait()
	if o.json {
		err = printJSON(stdout, results)
	} else {
		err = printPings(stdout, results)
	}
	down := 0
	for _, r := range results {
		if !r.OK {
			down++
		}
	}
	if err == nil && down > 0 {
		err = fmt.Errorf("%d of %d members did not answer", down, len(results))
	}
	return err
}

func printPings(w io.Writer, results []pingResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "NODE\tPING\tTIME")
	for _, r := range results {
		if r.OK {
			fmt.Fprintf(tw, "%s\tOK\t%.2f ms\n", r.Addr, r.Ms)
		} else {
			fmt.Fprintf(tw, "%s\tDOWN\t%s\n", r.Addr, r.Error)
		}
	}
	return tw.Flush()
}

func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// marked is addr, starred when it is the node answering.
func marked(addr string, self bool) string {
	if self {
		return addr + " *"
	}
	return addr
}

// isTerminal reports whether w is a terminal, where top redraws in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
