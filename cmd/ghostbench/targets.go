package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/ghostdb/ghost"
	"github.com/maypok86/otter/v2"
	"github.com/redis/go-redis/v9"
)

// The targets a cell can drive.
const (
	targetGhost     = "ghost"
	targetMemcached = "memcached"
	targetRedis     = "redis"
	targetSyncMap   = "sync.Map"
	targetOtter     = "otter"
	targetFloor     = "floor" // floor.go: a Go request/response over loopback
)

// client is one target as the load loop sees it: a get that tells hit from
// miss, and a set. Implementations are safe for concurrent use.
type client interface {
	get(ctx context.Context, key string) (hit bool, err error)
	set(ctx context.Context, key string, value []byte) error
	close()
}

// ghostClient drives the node embedded in this process. It reads with
// ghost.GetAs[[]byte], the typed Get a program that stores []byte calls:
// what the memcached and Redis clients return, one copy of the value.
type ghostClient struct{ node *ghost.Node }

func (c ghostClient) get(ctx context.Context, key string) (bool, error) {
	_, err := ghost.GetAs[[]byte](ctx, c.node, key)
	if errors.Is(err, ghost.ErrCacheMiss) {
		return false, nil
	}
	return err == nil, err
}

func (c ghostClient) set(ctx context.Context, key string, value []byte) error {
	return c.node.Put(ctx, key, value, ghost.NoExpiry)
}

func (ghostClient) close() {}

// memcachedClient drives memcached with gomemcache.
type memcachedClient struct{ mc *memcache.Client }

func newMemcachedClient(addr string, conns int) client {
	mc := memcache.New(addr)
	mc.MaxIdleConns = conns
	mc.Timeout = 2 * time.Second
	return memcachedClient{mc}
}

func (c memcachedClient) get(_ context.Context, key string) (bool, error) {
	_, err := c.mc.Get(key)
	if errors.Is(err, memcache.ErrCacheMiss) {
		return false, nil
	}
	return err == nil, err
}

func (c memcachedClient) set(_ context.Context, key string, value []byte) error {
	return c.mc.Set(&memcache.Item{Key: key, Value: value})
}

func (c memcachedClient) close() { _ = c.mc.Close() }

// redisClient drives Redis with go-redis.
type redisClient struct{ rc *redis.Client }

func newRedisClient(addr string, conns int) client {
	return redisClient{redis.NewClient(&redis.Options{
		Addr:         addr,
		PoolSize:     conns,
		MinIdleConns: conns,
		ReadTimeout:  2 * time.Second,
		WriteTimeout: 2 * time.Second,
	})}
}

func (c redisClient) get(ctx context.Context, key string) (bool, error) {
	_, err := c.rc.Get(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	return err == nil, err
}

func (c redisClient) set(ctx context.Context, key string, value []byte) error {
	return c.rc.Set(ctx, key, value, 0).Err()
}

func (c redisClient) close() { _ = c.rc.Close() }

// syncMapClient is the floor: a sync.Map in this process, no network, no
// encoding, no eviction.
type syncMapClient struct{ m *sync.Map }

func (c syncMapClient) get(_ context.Context, key string) (bool, error) {
	_, ok := c.m.Load(key)
	return ok, nil
}

func (c syncMapClient) set(_ context.Context, key string, value []byte) error {
	c.m.Store(key, value)
	return nil
}

func (syncMapClient) close() {}

// otterClient is the other floor: an otter cache in this process, the
// bounded local cache a Go user would pick instead of embedding GhostDB.
type otterClient struct{ c *otter.Cache[string, []byte] }

func (c otterClient) get(_ context.Context, key string) (bool, error) {
	_, ok := c.c.GetIfPresent(key)
	return ok, nil
}

func (c otterClient) set(_ context.Context, key string, value []byte) error {
	c.c.Set(key, value)
	return nil
}

func (otterClient) close() {}

// server is a memcached or redis-server process that ghostbench started.
type server struct {
	name    string
	addr    string
	version string
	cmd     *exec.Cmd
	exited  chan struct{}
	dir     string
	stdin   io.Closer // the floor server's: closing it ends the server
}

// missingServerError says a server binary is not on PATH, and how to get it.
type missingServerError struct{ binary, pkg string }

func (e missingServerError) Error() string {
	return fmt.Sprintf("%s not found on PATH: install it with `apt-get update && apt-get install -y %s` (Debian/Ubuntu) to compare against it", e.binary, e.pkg)
}

// startServer starts memcached or Redis on a free port of 127.0.0.1, with
// persistence off, and waits until it accepts connections. The process is
// killed when ghostbench dies.
func startServer(ctx context.Context, target string) (*server, error) {
	binary, pkg := "memcached", "memcached"
	if target == targetRedis {
		binary, pkg = "redis-server", "redis-server"
	}
	path, err := exec.LookPath(binary)
	if err != nil {
		return nil, missingServerError{binary, pkg}
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &server{name: target, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), exited: make(chan struct{})}
	var args []string
	switch target {
	case targetMemcached:
		args = []string{"-l", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "0", "-m", "1024", "-c", "4096"}
		if os.Geteuid() == 0 {
			args = append(args, "-u", "root") // memcached refuses to run as root without -u
		}
		s.version = commandOutput(ctx, path, "-V")
	case targetRedis:
		if s.dir, err = os.MkdirTemp("", "ghostbench-redis-"); err != nil {
			return nil, err
		}
		args = []string{"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "", "--appendonly", "no",
			"--protected-mode", "no", "--daemonize", "no", "--dir", s.dir, "--logfile", "", "--loglevel", "warning"}
		s.version = commandOutput(ctx, path, "--version")
	}
	s.cmd = exec.Command(path, args...)
	s.cmd.SysProcAttr = childAttr()
	var stderr bytes.Buffer
	s.cmd.Stderr = &stderr
	if err := s.cmd.Start(); err != nil {
		s.cleanup()
		return nil, fmt.Errorf("start %s: %w", binary, err)
	}
	go func() { _ = s.cmd.Wait(); close(s.exited) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", s.addr, time.Second)
		if err == nil {
			conn.Close()
			slog.Debug("server started", "server", binary, "addr", s.addr, "pid", s.cmd.Process.Pid)
			return s, nil
		}
		select {
		case <-s.exited:
			s.cleanup()
			return nil, fmt.Errorf("%s exited at start: %s", binary, strings.TrimSpace(stderr.String()))
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("%s did not accept connections on %s within 10s", binary, s.addr)
		}
	}
}

// pid is the server's process id.
func (s *server) pid() int { return s.cmd.Process.Pid }

// stop ends the server process ghostbench started, and nothing else.
func (s *server) stop() {
	if s.stdin != nil {
		_ = s.stdin.Close()
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.exited:
	case <-time.After(3 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	s.cleanup()
}

func (s *server) cleanup() {
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}

// commandOutput runs a version command and returns its first line.
func commandOutput(ctx context.Context, name string, args ...string) string {
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// freePort returns a port of 127.0.0.1 that is free for TCP and UDP at the
// time of the call, as a GhostDB node needs both.
func freePort() (int, error) {
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		ln.Close()
		if err == nil {
			pc.Close()
			return port, nil
		}
	}
	return 0, errors.New("no free port on 127.0.0.1 for both TCP and UDP")
}
