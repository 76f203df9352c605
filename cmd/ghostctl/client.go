package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// client talks to the HTTP gateway of the nodes it was given, using the
// first that answers.
type client struct {
	hc      *http.Client
	token   string
	addrs   []string
	current int // index in addrs of the node that answered last
}

func newClient(addrs []string, token string, timeout time.Duration) *client {
	// No proxy: cache nodes live on private networks.
	tr := &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second}
	return &client{hc: &http.Client{Transport: tr, Timeout: timeout}, token: token, addrs: addrs}
}

// close drops the kept-alive connections.
func (c *client) close() { c.hc.CloseIdleConnections() }

// reply is a reply of the original protocol; Value stays JSON.
type reply struct {
	Gobj struct {
		Key   string          `json:"Key"`
		Value json.RawMessage `json:"Value"`
		TTL   int64           `json:"TTL"`
	} `json:"Gobj"`
	Status  int    `json:"Status"`
	Message string `json:"Message"`
	Error   string `json:"Error"`
	raw     []byte // the reply as received
}

// gobj is the object of a request of the original protocol.
type gobj struct {
	Key   string `json:"Key,omitempty"`
	Value any    `json:"Value,omitempty"`
	TTL   int64  `json:"TTL,omitempty"`
}

// command runs a command of the original protocol, on the first node that
// answers.
func (c *client) command(ctx context.Context, name string, obj gobj) (reply, error) {
	body, err := json.Marshal(map[string]gobj{"Gobj": obj})
	if err != nil {
		return reply{}, err
	}
	var rep reply
	raw, err := c.do(ctx, http.MethodPost, "/"+name, body)
	if err != nil {
		return rep, err
	}
	if err := json.Unmarshal(raw, &rep); err != nil {
		return rep, fmt.Errorf("%s: the reply to %s is not the GhostDB protocol: %w", c.addrs[c.current], name, err)
	}
	rep.raw = raw
	return rep, nil
}

// getJSON reads path from the first node that answers into v.
func (c *client) getJSON(ctx context.Context, path string, v any) error {
	raw, err := c.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%s%s: %w", c.addrs[c.current], path, err)
	}
	return nil
}

// do sends a request to the node that answered last, and to the next ones
// in turn while they cannot be reached. It returns the body of a 2xx reply.
func (c *client) do(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	var errs []error
	for range c.addrs {
		addr := c.addrs[c.current]
		raw, err := c.doAt(ctx, addr, method, path, body)
		var unreachable unreachableError
		if !errors.As(err, &unreachable) || ctx.Err() != nil {
			return raw, err
		}
		errs = append(errs, err)
		c.current = (c.current + 1) % len(c.addrs)
	}
	if len(errs) == 1 {
		return nil, errs[0]
	}
	return nil, fmt.Errorf("no node answered: %w", errors.Join(errs...))
}

// unreachableError is a node that could not be reached: try another.
type unreachableError struct{ err error }

func (e unreachableError) Error() string { return e.err.Error() }
func (e unreachableError) Unwrap() error { return e.err }

// doAt sends one request to addr.
func (c *client) doAt(ctx context.Context, addr, method, path string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, unreachableError{fmt.Errorf("cannot reach %s: %w", addr, unwrapURLError(err))}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, unreachableError{fmt.Errorf("%s: reading the reply: %w", addr, err)}
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return nil, fmt.Errorf("%s refused the request (HTTP %d): check -token", addr, resp.StatusCode)
	case resp.StatusCode/100 != 2:
		var rep reply
		if json.Unmarshal(raw, &rep) == nil && rep.Message != "" {
			return nil, fmt.Errorf("%s: HTTP %d: %s (%s)", addr, resp.StatusCode, rep.Message, rep.Error)
		}
		return nil, fmt.Errorf("%s: HTTP %s: %s", addr, resp.Status, bytes.TrimSpace(raw))
	}
	return raw, nil
}

// unwrapURLError drops the method and URL net/http puts before the cause.
func unwrapURLError(err error) error {
	var u *url.Error
	if errors.As(err, &u) {
		return u.Err
	}
	return err
}
