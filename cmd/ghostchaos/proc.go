package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The suite's side of its child processes (node processes and delayers):
// each runs in a host's namespace through "ip netns exec", which execs it
// in place, so the process the suite started is the one it signals. Their
// stdout is read line by line: reports go to the scenario's observer,
// replies to the command waiting for them.

// Flags that make the program a child process: not meant to be typed.
const (
	nodeFlag    = "-node"
	delayerFlag = "-delayer"
)

// startTimeout bounds how long a child has to say it is ready.
const startTimeout = 20 * time.Second

// observer receives a child's reports.
type observer interface {
	report(h *host, m message)
}

// proc is a running child process.
type proc struct {
	host   *host
	epoch  int
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	obs    observer
	paused atomic.Bool // SIGSTOPped: do not wait for it to answer

	mu      sync.Mutex // one command at a time
	nextID  int64
	replies chan message
	exited  chan struct{} // closed once it has exited and its stdout is drained
}

// startProc starts exe with args in host h's namespace and waits for its
// ready line.
func startProc(ctx context.Context, exe string, h *host, epoch int, obs observer, args ...string) (*proc, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", h.ns, exe}, args...)...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = childAttr()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: start: %w", h, err)
	}
	p := &proc{host: h, epoch: epoch, cmd: cmd, stdin: stdin, obs: obs, replies: make(chan message, 1), exited: make(chan struct{})}
	ready := make(chan message, 1)
	go p.readLoop(stdout, ready)
	t := time.NewTimer(startTimeout)
	defer t.Stop()
	select {
	case m := <-ready:
		if m.T == msgReady {
			return p, nil
		}
		err = fmt.Errorf("%s: %s", h, m.Err)
	case <-p.exited:
		err = fmt.Errorf("%s: exited before it was ready: %v", h, cmd.ProcessState)
	case <-t.C:
		err = fmt.Errorf("%s: not ready after %v", h, startTimeout)
	case <-ctx.Done():
		err = ctx.Err()
	}
	p.kill()
	return nil, err
}

// readLoop reads the child's lines until EOF, then waits for it.
func (p *proc) readLoop(stdout io.Reader, ready chan<- message) {
	defer close(p.exited)
	defer func() { _ = p.cmd.Wait() }() // only once stdout is drained, as exec requires
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 256<<20)
	for sc.Scan() {
		var m message
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			fmt.Fprintf(os.Stderr, "ghostchaos: %s: bad line %.200q: %v\n", p.host, sc.Text(), err)
			continue
		}
		switch m.T {
		case msgReady, msgFailed:
			select {
			case ready <- m:
			default:
			}
		case msgReply:
			select {
			case p.replies <- m:
			default: // nobody waits: a reply that came after its call gave up
			}
		default:
			if p.obs != nil {
				p.obs.report(p.host, m)
			}
		}
	}
}

// call sends a command and waits for its reply, at most timeout.
func (p *proc) call(ctx context.Context, cmd command, timeout time.Duration) (message, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.nextID++
	cmd.ID = p.nextID
	line, err := json.Marshal(cmd)
	if err != nil {
		return message{}, err
	}
	if _, err := p.stdin.Write(append(line, '\n')); err != nil {
		return message{}, fmt.Errorf("%s: %s: %w", p.host, cmd.Cmd, err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case m := <-p.replies:
			if m.ID != cmd.ID {
				continue // the late reply of an earlier call
			}
			if m.Err != "" {
				return m, fmt.Errorf("%s: %s: %s", p.host, cmd.Cmd, m.Err)
			}
			return m, nil
		case <-p.exited:
			return message{}, fmt.Errorf("%s: %s: the node process exited", p.host, cmd.Cmd)
		case <-t.C:
			return message{}, fmt.Errorf("%s: %s: no reply in %v", p.host, cmd.Cmd, timeout)
		case <-ctx.Done():
			return message{}, ctx.Err()
		}
	}
}

// send writes one line to a child that does not reply (the delayer).
func (p *proc) send(line string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, err := io.WriteString(p.stdin, line+"\n")
	return err
}

// signal sends sig to the process.
func (p *proc) signal(sig syscall.Signal) error {
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("%s: %v: %w", p.host, sig, err)
	}
	switch sig {
	case syscall.SIGSTOP:
		p.paused.Store(true)
	case syscall.SIGCONT:
		p.paused.Store(false)
	}
	return nil
}

// kill kills the process with SIGKILL and waits until it is gone and its
// reports are read.
func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// close ends the process gently: a node closing its stdin leaves the
// cluster and exits. One that does not within timeout is killed.
func (p *proc) close(timeout time.Duration) {
	if p.paused.Load() {
		_ = p.signal(syscall.SIGCONT)
	}
	p.stdin.Close()
	select {
	case <-p.exited:
	case <-time.After(timeout):
		p.kill()
	}
}
