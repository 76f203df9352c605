package main

import (
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/ghostdb/ghost"
)

// Node flags: the settings of the library a scenario may change, passed to
// a node process as command-line flags after its JSON configuration, so
// that each host's can differ (a skewed clock on one host only) and a
// process listing shows them. Zero leaves the library's default.

// nodeSettings are a node process's flags.
type nodeSettings struct {
	Replicas        int           // -replicas: Config.Replicas
	TombstoneTTL    time.Duration // -tombstone-ttl: Config.TombstoneTTL
	MaxKeys         int           // -max-keys: Config.MaxKeys; a small one keeps the cache full
	CrawlerInterval time.Duration // -crawler-interval: Config.CrawlerInterval, which also drops old tombstones
	ClockOffset     time.Duration // -clock-offset: the node's clock runs this far ahead (behind, when negative)
	// SnapshotInterval (-snapshot-interval) gives the node a DataDir of
	// its own, the host's for the scenario (nodeConfig.DataDir), and
	// writes its snapshot this often: warm restarts.
	SnapshotInterval time.Duration
}

// flagSet binds the settings to a flag set.
func (ns *nodeSettings) flagSet(output io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("ghostchaos "+nodeFlag, flag.ContinueOnError)
	fs.SetOutput(output)
	fs.IntVar(&ns.Replicas, "replicas", 0, "copies of each pair (Config.Replicas; 0: the default)")
	fs.DurationVar(&ns.TombstoneTTL, "tombstone-ttl", 0, "how long a deleted key's tombstone is kept (Config.TombstoneTTL; 0: the default)")
	fs.IntVar(&ns.MaxKeys, "max-keys", 0, "most pairs the node holds before it evicts (Config.MaxKeys; 0: the default)")
	fs.DurationVar(&ns.CrawlerInterval, "crawler-interval", 0, "how often expired pairs and old tombstones are removed (Config.CrawlerInterval; 0: the default)")
	fs.DurationVar(&ns.ClockOffset, "clock-offset", 0, "the node's clock (Config.Clock) runs this far ahead of the host's; negative: behind")
	fs.DurationVar(&ns.SnapshotInterval, "snapshot-interval", 0, "keep the partitions in the host's DataDir, written this often (Config.SnapshotInterval; 0: no DataDir)")
	return fs
}

// parseNodeFlags reads a node process's flags.
func parseNodeFlags(args []string, output io.Writer) (nodeSettings, error) {
	var ns nodeSettings
	fs := ns.flagSet(output)
	if err := fs.Parse(args); err != nil {
		return ns, err
	}
	switch {
	case fs.NArg() > 0:
		return ns, fmt.Errorf("node flags: unexpected arguments %q", fs.Args())
	case ns.Replicas < 0 || ns.MaxKeys < 0 || ns.TombstoneTTL < 0 || ns.CrawlerInterval < 0 || ns.SnapshotInterval < 0:
		return ns, fmt.Errorf("node flags: negative setting in %+v", ns)
	}
	return ns, nil
}

// args renders the settings as the flags parseNodeFlags reads; zero
// settings are left out.
func (ns nodeSettings) args() []string {
	var out []string
	if ns.Replicas != 0 {
		out = append(out, "-replicas", strconv.Itoa(ns.Replicas))
	}
	if ns.TombstoneTTL != 0 {
		out = append(out, "-tombstone-ttl", ns.TombstoneTTL.String())
	}
	if ns.MaxKeys != 0 {
		out = append(out, "-max-keys", strconv.Itoa(ns.MaxKeys))
	}
	if ns.CrawlerInterval != 0 {
		out = append(out, "-crawler-interval", ns.CrawlerInterval.String())
	}
	if ns.ClockOffset != 0 {
		out = append(out, "-clock-offset", ns.ClockOffset.String())
	}
	if ns.SnapshotInterval != 0 {
		out = append(out, "-snapshot-interval", ns.SnapshotInterval.String())
	}
	return out
}

// String shows the settings for the report, as flags.
func (ns nodeSettings) String() string {
	if a := ns.args(); len(a) > 0 {
		return strings.Join(a, " ")
	}
	return "defaults"
}

// over returns ns with the non-zero settings of o in place of its own: a
// host's settings over the scenario's.
func (ns nodeSettings) over(o nodeSettings) nodeSettings {
	if o.Replicas != 0 {
		ns.Replicas = o.Replicas
	}
	if o.TombstoneTTL != 0 {
		ns.TombstoneTTL = o.TombstoneTTL
	}
	if o.MaxKeys != 0 {
		ns.MaxKeys = o.MaxKeys
	}
	if o.CrawlerInterval != 0 {
		ns.CrawlerInterval = o.CrawlerInterval
	}
	if o.ClockOffset != 0 {
		ns.ClockOffset = o.ClockOffset
	}
	return ns
}

// apply sets them in a node's configuration.
func (ns nodeSettings) apply(cfg *ghost.Config) {
	cfg.Replicas = ns.Replicas
	cfg.TombstoneTTL = ns.TombstoneTTL
	cfg.MaxKeys = ns.MaxKeys
	cfg.CrawlerInterval = ns.CrawlerInterval
	cfg.SnapshotInterval = ns.SnapshotInterval
	if off := ns.ClockOffset; off != 0 {
		// The node's own clock only: versions, TTL deadlines and
		// tombstone ages. The clients in the process, and the suite,
		// keep the host's clock, which the ledger's times come from.
		cfg.Clock = func() time.Time { return time.Now().Add(off) }
	}
}
