package main

import (
	"fmt"
	"strings"
	"time"
)

// The suite drives each node process over its stdin and stdout, in JSON
// lines: commands in, and out both replies and a stream of reports (the
// writes begun and ended, and a latency summary every slotLength).

// nodeConfig is what a node process starts with, as JSON after -node.
type nodeConfig struct {
	Host     int      `json:"host"`               // host number, from 1
	Epoch    int      `json:"epoch"`              // unique per node process of a run: orders the writes of a restarted writer
	Addr     string   `json:"addr"`               // ip:7991
	NodeFile string   `json:"node_file"`          // the node list: IP addresses only
	Subnet   string   `json:"subnet"`             // the suite's subnet
	Hosts    []string `json:"hosts"`              // every host IP of the run: the address guard
	Verbose  bool     `json:"verbose"`            // node logs to stderr
	DataDir  string   `json:"data_dir,omitempty"` // the node's Config.DataDir, with -snapshot-interval
}

// Commands a node process obeys.
const (
	cmdLoad   = "load"   // start the writers and readers
	cmdStop   = "stop"   // stop them, report the last slot, reply
	cmdStatus = "status" // members and Safe
	cmdCheck  = "check"  // read keys, with retries, and return what was read
	cmdLeave  = "leave"  // stop the load, Leave the cluster and exit
	cmdFreeze = "freeze" // writers leave their warm keys alone from now on
	cmdProbe  = "probe"  // dial addresses from the host: does the network let them through?
)

// command is one line a node process reads.
type command struct {
	ID   int64     `json:"id"`
	Cmd  string    `json:"cmd"`
	Load *loadSpec `json:"load,omitempty"`
	Keys []string  `json:"keys,omitempty"` // check
	// Probe: addresses to dial from the node's host (cmdProbe).
	Probe []string `json:"probe,omitempty"`
}

// loadSpec is the workload of one node process.
type loadSpec struct {
	Writers     int           `json:"writers"`      // writer goroutines on this host, each with keys of its own
	Keys        int           `json:"keys"`         // keys per writer
	WriteEvery  time.Duration `json:"write_every"`  // pace of each writer
	Readers     int           `json:"readers"`      // reader goroutines
	ReadEvery   time.Duration `json:"read_every"`   // pace of each reader
	WriterHosts int           `json:"writer_hosts"` // hosts 1..WriterHosts have writers: readers read their keys
	Fresh       bool          `json:"fresh"`        // the keys were never written: writers add the cold ones, and know the rest absent
	Frozen      bool          `json:"frozen"`       // writers leave their warm keys alone
	Until       time.Time     `json:"until"`        // the load stops by itself then, whatever happens
	// TTLShare is the percentage of puts and adds written with a TTL,
	// drawn between TTLMin and TTLMax; the others never expire.
	TTLShare int           `json:"ttl_share,omitempty"`
	TTLMin   time.Duration `json:"ttl_min,omitempty"`
	TTLMax   time.Duration `json:"ttl_max,omitempty"`
	// Shared keys (shared.go) that this host's shared client calls, one
	// call every SharedEvery; none when 0.
	Shared      int           `json:"shared,omitempty"`
	SharedEvery time.Duration `json:"shared_every,omitempty"`
}

// Report and reply types, in message.T.
const (
	msgReady = "ready"
	msgBegin = "b" // a write is about to be sent
	msgEnd   = "e" // a write returned
	// A shared key's call (shared.go) is about to be sent, and returned.
	msgSharedBegin = "xb"
	msgSharedEnd   = "xe"
	msgSlot        = "s"     // a latency summary
	msgReply       = "reply" // the reply to a command
	msgFailed      = "fatal" // the node process cannot go on
)

// message is one line a node process writes. Which fields are set depends
// on T.
type message struct {
	T string `json:"t"`

	// msgBegin, msgEnd: a write.
	Ref    opRef         `json:"ref,omitzero"`
	Key    string        `json:"k,omitempty"`
	Kind   opKind        `json:"o,omitempty"`
	Value  string        `json:"v,omitempty"`
	TTL    time.Duration `json:"ttl,omitempty"` // msgBegin: the put's or add's TTL
	At     int64         `json:"at,omitempty"`  // unix ns: just before the call (msgBegin), just after it (msgEnd)
	Result outcome       `json:"r,omitempty"`

	// msgSlot: the calls that ended in one slot.
	Slot *slot `json:"slot,omitempty"`

	// msgReply, msgReady, msgFailed.
	ID      int64                 `json:"id,omitempty"`
	Err     string                `json:"err,omitempty"`
	Members []string              `json:"members,omitempty"`
	Safe    string                `json:"safe,omitempty"` // safeYes, safeNo or safeUnknown
	Reads   map[string]readResult `json:"reads,omitempty"`
	Addr    string                `json:"addr,omitempty"`    // msgReply to status: where the node says it listens
	Stats   map[string]float64    `json:"stats,omitempty"`   // msgReply to status: the node's own figures, by the names below
	Reached map[string]string     `json:"reached,omitempty"` // msgReply to probe: each address, "" when it answered, else why not
}

// The figures of a status reply's Stats: the node's Prometheus names.
const (
	statPairs     = "ghost_pairs"
	statEvictions = "ghost_evictions_total"
	statSnapshot  = "ghost_snapshot_timestamp_seconds"
	statRestored  = "ghost_restored_pairs"
	statExpired   = "ghost_expired_total"
)

// What a node says about Safe: replication adds Node.Safe; until then the
// answer is unknown.
const (
	safeYes     = "yes"
	safeNo      = "no"
	safeUnknown = "unknown"
)

// slotLength is how often node processes summarise their calls.
const slotLength = 250 * time.Millisecond

// slot sums up the calls (reads and writes) that ended between From and
// To, unix milliseconds.
type slot struct {
	Host      int        `json:"host"`
	From      int64      `json:"from"`
	To        int64      `json:"to"`
	Ops       int64      `json:"ops"`
	Failed    int64      `json:"failed"`
	Hist      [][2]int64 `json:"hist,omitempty"`       // latencies of every call, as latency.Histogram.Sparse
	FirstFail int64      `json:"first_fail,omitempty"` // unix ms of the first and last failed call
	LastFail  int64      `json:"last_fail,omitempty"`
	FirstErr  string     `json:"first_err,omitempty"`
}

// Key classes: what its writer does with a key during a scenario. Hot
// keys alone would hide what a fault did: by the end of a long run every
// one of them has been written again since.
const (
	classCold = "cold" // added once when the load starts, then only read: pairs lost at rest
	classWarm = "warm" // written until the fault is healed, then only read: what became of the writes made during the fault
	classHot  = "hot"  // written all along
)

// keyClass is the class of a writer's key i: a third of the keys each.
func keyClass(i int) string {
	switch i % 3 {
	case 0:
		return classCold
	case 1:
		return classWarm
	}
	return classHot
}

// keyName is writer w's key i on host h, its class in its name.
func keyName(h, w, i int) string { return fmt.Sprintf("h%d-w%d-%s%d", h, w, keyClass(i), i) }

// classOfKey is the class named in a key, or "" for a key of no class.
func classOfKey(key string) string {
	for _, c := range []string{classCold, classWarm, classHot} {
		if strings.Contains(key, "-"+c) {
			return c
		}
	}
	return ""
}
