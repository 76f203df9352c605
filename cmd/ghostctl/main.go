package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ghostdb/ghost"
)

const usage = `ghostctl drives a GhostDB cluster through the HTTP gateway of any of its
nodes. Any node answers for any key; stats and top gather the figures of
every member from the node asked.

Usage:
  ghostctl [flags] <command> [arguments]

Commands:
  members                   the members of the cluster and their state
  ping                      ping every member over HTTP, with round-trip times
  get KEY                   print the value stored under KEY, as JSON
  put KEY VALUE [-ttl D]    store VALUE under KEY, replacing any pair there
  add KEY VALUE [-ttl D]    store VALUE under KEY only if no pair holds KEY
  delete KEY                remove the pair stored under KEY
  flush                     remove every pair from every node
  stats                     per node: pairs, bytes, hit ratio, requests/s, memory
  top [-interval D] [-n N]  stats, refreshed until interrupted (Ctrl-C)
  force-quorum              let the node named by -addr, the coordinator of a side
                            that lost its majority for good, carry on without it

VALUE is parsed as JSON when it is valid JSON (42, 1.5, true, null,
"quoted", [1, 2], {"name": "Ada"}) and taken as a string otherwise (hello).
Put arguments that begin with "-" and are not numbers after "--":
  ghostctl put greeting -- -hello-

Flags (before or after the command):
  -addr HOST:PORT  the node to talk to (default 127.0.0.1:7991; no port means 7991)
  -nodes FILE      a node file, as Config.PeersFile (a path or an http(s) URL):
                   the first listed node that answers is used
  -token T         sent as "Authorization: Bearer T", for nodes that want a token
  -json            print results as JSON: the node's replies for get, put, add,
                   delete and flush; arrays of nodes for the others
  -timeout D       how long to wait for a node (default 5s)
  -ttl D           put, add: how long the pair lives, in whole seconds: 90s, 10m,
                   2h, or never (default: the node's Config.DefaultTTL)
  -interval D      top: time between refreshes (default 2s)
  -n N             top: stop after N refreshes (default 0: until interrupted)

Exit status:
  0  success
  1  CACHE_MISS, NOT_STORED or NOT_FOUND (the word is printed on stderr)
  2  a usage error, a node that cannot be reached, or an error a node reports

Examples:
  ghostctl put user:42 '{"name": "Ada", "langs": ["en", "fr"]}' -ttl 10m
  ghostctl get user:42
  ghostctl -addr 10.0.0.7 stats
  ghostctl -nodes /etc/ghostdb/nodes.conf top
  ghostctl -json members | jq -r '.[].addr'
`

// Exit codes.
const (
	exitOK      = 0
	exitOutcome = 1 // CACHE_MISS, NOT_STORED, NOT_FOUND
	exitError   = 2 // usage, connection, errors reported by a node
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// options are the parsed command line.
type options struct {
	addr     string
	nodes    string
	token    string
	json     bool
	timeout  time.Duration
	ttl      ttlFlag
	interval time.Duration
	count    int
	set      map[string]bool // the flags given
	args     []string        // the command and its arguments
}

// ttlFlag is -ttl: seconds for the gateway, 0 when not given.
type ttlFlag struct{ seconds int64 }

func (f *ttlFlag) String() string { return strconv.FormatInt(f.seconds, 10) }

func (f *ttlFlag) Set(s string) error {
	if s == "never" || s == "-1" {
		f.seconds = -1
		return nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 {
		f.seconds = n
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < time.Second || d%time.Second != 0 {
		return errors.New("want a whole number of seconds as 90s, 10m or 2h, or never")
	}
	f.seconds = int64(d / time.Second)
	return nil
}

// usageError is a command line that cannot be run.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// run is ghostctl: it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	opts, err := parseArgs(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "ghostctl: %v\nRun 'ghostctl -h' for help.\n", err)
		return exitError
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err = runCommand(ctx, opts, stdout, stderr)
	var outcome outcomeError
	var uerr usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &outcome):
		fmt.Fprintln(stderr, outcome.word)
		return exitOutcome
	case errors.As(err, &uerr):
		fmt.Fprintf(stderr, "ghostctl: %v\nRun 'ghostctl -h' for help.\n", err)
		return exitError
	}
	fmt.Fprintf(stderr, "ghostctl: %v\n", err)
	return exitError
}

// parseArgs reads flags wherever they are among the arguments, so that
// "put k v -ttl 5m" works as "-ttl 5m put k v" does.
func parseArgs(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("ghostctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:7991", "")
	fs.StringVar(&o.nodes, "nodes", "", "")
	fs.StringVar(&o.token, "token", "", "")
	fs.BoolVar(&o.json, "json", false, "")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "")
	fs.Var(&o.ttl, "ttl", "")
	fs.DurationVar(&o.interval, "interval", 2*time.Second, "")
	fs.IntVar(&o.count, "n", 0, "")

	var flags []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			o.args = append(o.args, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" || isNumber(a) {
			o.args = append(o.args, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if f := fs.Lookup(name); f != nil && !strings.Contains(name, "=") && !isBoolFlag(f) && i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	if err := fs.Parse(flags); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, usageError{err.Error()}
	}
	o.set = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { o.set[f.Name] = true })
	if len(o.args) > 0 && o.args[0] == "help" {
		return o, flag.ErrHelp
	}
	return o, o.check()
}

// check refuses flags that do not go together or with the command.
func (o *options) check() error {
	if len(o.args) == 0 {
		return usagef("no command")
	}
	cmd := o.args[0]
	only := map[string][]string{"ttl": {"put", "add"}, "interval": {"top"}, "n": {"top"}}
	for flagName, cmds := range only {
		if o.set[flagName] && !slices.Contains(cmds, cmd) {
			return usagef("-%s goes with %s, not %s", flagName, strings.Join(cmds, " and "), cmd)
		}
	}
	switch {
	case o.set["addr"] && o.set["nodes"]:
		return usagef("-addr and -nodes: give one")
	case o.timeout <= 0:
		return usagef("-timeout %v: want a positive duration", o.timeout)
	case o.interval < 100*time.Millisecond:
		return usagef("-interval %v: want 100ms or more", o.interval)
	case o.count < 0:
		return usagef("-n %d: want 0 (until interrupted) or more", o.count)
	}
	return nil
}

// targets are the addresses to try, in order.
func (o *options) targets(ctx context.Context) ([]string, error) {
	if o.nodes == "" {
		addr, err := ghost.NodeAddr(o.addr)
		if err != nil {
			return nil, usagef("-addr: %v", err)
		}
		return []string{addr}, nil
	}
	addrs, err := ghost.ReadNodeList(ctx, o.nodes)
	if err != nil {
		return nil, err
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("node file %s lists no node", o.nodes)
	}
	return addrs, nil
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// isNumber reports whether s is a JSON number, such as -5 or -1.5e3: a
// value, not a flag.
func isNumber(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return err == nil && strings.TrimLeft(s, "-0123456789.eE+") == ""
}
