package ghost

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/buraksezer/consistent"
	"github.com/cespare/xxhash/v2"
	"github.com/vmihailenco/msgpack/v5"
)

// Members and the partition table: which members hold each partition, and
// how the coordinator plans the next table from the last one.
//
// A table lists, per partition, its in-sync copies (owners, the primary
// first) and the members being filled with a copy (pending). Reads go to the
// primary, then to the other in-sync copies; writes go to the primary, which
// applies them and copies them to every other owner and pending member
// before it acknowledges. Tables are immutable and versioned: one
// coordinator publishes them, and a node applies only newer ones.

type member struct {
	name  string // memberlist name, unique per process start: the incarnation id
	addr  string // host:port
	start int64  // unix nanoseconds the process joined; the oldest coordinates
	since uint64 // in a table: the version that made it a member (again)
}

// same reports whether a and b are one incarnation at one address.
func (m member) same(o member) bool {
	return m.name == o.name && m.addr == o.addr && m.start == o.start
}

// String makes member a consistent.Member.
func (m member) String() string { return m.name }

// older reports whether a has been a member longer than b: the oldest live
// member is the coordinator.
func older(a, b member) bool {
	if a.start != b.start {
		return a.start < b.start
	}
	return a.name < b.name
}

// table is an immutable snapshot of the members and of who holds each
// partition.
type table struct {
	version     uint64
	coordinator string   // name of the member that published it
	line        []string // coordinators of the tables before it: line[i] published version-1-i
	members     []member // sorted by name
	owners      [][]int  // per partition: in-sync copies, indices into members, primary first
	pending     [][]int  // per partition: members being filled, not yet in sync
	self        int      // this node's index in members, -1 when it is not one
}

// singleTable is the table of a node alone: it holds every partition.
func singleTable(self member, partitions int) *table {
	t := &table{coordinator: self.name, members: []member{self}, owners: make([][]int, partitions), pending: make([][]int, partitions)}
	for p := range t.owners {
		t.owners[p] = []int{0}
	}
	return t.withSelf(self.name)
}

// withSelf returns t with self set for the node called name.
func (t *table) withSelf(name string) *table {
	c := *t
	c.self = c.index(name)
	return &c
}

func (t *table) index(name string) int {
	i, ok := slices.BinarySearchFunc(t.members, name, func(m member, n string) int { return strings.Compare(m.name, n) })
	if !ok {
		return -1
	}
	return i
}

// newerThan orders tables: by version, then by publisher, so that two
// coordinators that published the same version (a split) agree on one.
func (t *table) newerThan(o *table) bool {
	if t.version != o.version {
		return t.version > o.version
	}
	return t.coordinator > o.coordinator
}

// lineLength is how many tables back a table names its line.
const lineLength = 16

// abandons reports whether applying t, newer than cur, leaves cur's line
// of tables: t has cur's version but another coordinator (preferred by
// name), or names another coordinator for cur's version in its line. Two
// coordinators at once (membership views that disagree for a moment)
// publish such lines, and the writes acknowledged under the line that
// loses may be on none of the holders the winning line gives their
// partitions. A table more than lineLength versions ahead cannot be told
// apart from a continuation, and counts as one.
func (t *table) abandons(cur *table) bool {
	if t.version == cur.version {
		return t.coordinator != cur.coordinator
	}
	back := t.version - cur.version // ≥ 1: t is newer
	return back <= uint64(len(t.line)) && t.line[back-1] != cur.coordinator
}

// following returns the line of the table planned from t.
func (t *table) following() []string {
	return append([]string{t.coordinator}, t.line[:min(len(t.line), lineLength-1)]...)
}

// primary is the index of partition p's primary.
func (t *table) primary(p int) int { return t.owners[p][0] }

func (t *table) isPrimary(p int) bool { return t.self >= 0 && t.owners[p][0] == t.self }

// holds reports whether this node keeps a copy of p, in sync or not.
func (t *table) holds(p int) bool {
	return t.self >= 0 && (slices.Contains(t.owners[p], t.self) || slices.Contains(t.pending[p], t.self))
}

// holdsAny reports whether member i keeps a copy of any partition.
func (t *table) holdsAny(i int) bool {
	for p := range t.owners {
		if slices.Contains(t.owners[p], i) || slices.Contains(t.pending[p], i) {
			return true
		}
	}
	return false
}

// inSync reports whether this node holds an in-sync copy of p.
func (t *table) inSync(p int) bool { return t.self >= 0 && slices.Contains(t.owners[p], t.self) }

// copiesOf returns the members other than the primary that must apply
// partition p's writes: the other owners and the pending members.
func (t *table) copiesOf(p int) []member {
	out := make([]member, 0, len(t.owners[p])+len(t.pending[p])-1)
	for _, i := range t.owners[p][1:] {
		out = append(out, t.members[i])
	}
	for _, i := range t.pending[p] {
		out = append(out, t.members[i])
	}
	return out
}

func (t *table) sameLayout(o *table) bool {
	if len(t.members) != len(o.members) {
		return false
	}
	for i := range t.members {
		if t.members[i] != o.members[i] {
			return false
		}
	}
	for p := range t.owners {
		if !slices.Equal(t.owners[p], o.owners[p]) || !slices.Equal(t.pending[p], o.pending[p]) {
			return false
		}
	}
	return true
}

// plan computes the next layout from base and the live members, moving as
// little as it can. Each partition's target holders are a primary chosen by
// consistent hashing (bounded load) over the members that are not leaving,
// and backups chosen per partition by rendezvous hashing, so that the
// backups of one primary's partitions are spread over every other member
// and repair after a crash is too. Copies in sync in base stay in sync
// (a dead primary's first live backup is promoted at once); targets that
// hold no in-sync copy become pending, to be filled; once every target is
// in sync, the copies that are not targets are dropped and the primary
// becomes the target primary.
func plan(base *table, live []member, leaving map[string]bool, replicas int) (next *table, targets [][]int) {
	live = slices.Clone(live)
	slices.SortFunc(live, func(a, b member) int { return strings.Compare(a.name, b.name) })
	for i, m := range live {
		if j := base.index(m.name); j >= 0 {
			live[i].since = base.members[j].since
		} else {
			live[i].since = base.version + 1 // the version next will have
		}
	}
	next = &table{coordinator: base.coordinator, members: live, owners: make([][]int, len(base.owners)), pending: make([][]int, len(base.owners))}
	targets = placement(live, leaving, replicas, len(base.owners))
	for p := range base.owners {
		var owners, pending []int
		for _, i := range base.owners[p] {
			if j := next.index(base.members[i].name); j >= 0 {
				owners = append(owners, j)
			}
		}
		want := targets[p]
		if len(owners) == 0 { // every copy is gone: start afresh on the targets
			next.owners[p] = slices.Clone(want)
			continue
		}
		for _, j := range want {
			if !slices.Contains(owners, j) {
				pending = append(pending, j)
			}
		}
		if len(pending) == 0 {
			owners = settledOwners(owners, want)
		}
		next.owners[p], next.pending[p] = owners, pending
	}
	return next, targets
}

// promote returns a copy of t in which member m's copy of partition p,
// pending until now, is in sync; the layout is tidied as plan would.
func (t *table) promote(p, m int, targets [][]int) *table {
	next := *t
	next.owners = slices.Clone(t.owners)
	next.pending = slices.Clone(t.pending)
	next.pending[p] = slices.DeleteFunc(slices.Clone(t.pending[p]), func(i int) bool { return i == m })
	next.owners[p] = append(slices.Clone(t.owners[p]), m)
	if len(next.pending[p]) == 0 && containsAll(next.owners[p], targets[p]) {
		next.owners[p] = settledOwners(next.owners[p], targets[p])
	}
	return &next
}

// settledOwners returns the in-sync copies of a partition whose targets
// (want, the primary first) are all in sync: the targets, and the primary
// it had until now when that one is not a target. The old primary stays a
// copy for one table, so that every write the new primary acknowledges
// passes through it and it cannot go on serving reads as the primary by
// an older table; the table after drops it (once it has confirmed this
// one: Node.holdDrops).
func settledOwners(owners, want []int) []int {
	next := slices.Clone(want)
	if old := owners[0]; !slices.Contains(want, old) {
		next = append(next, old)
	}
	return next
}

func containsAll(have, want []int) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// placement returns, per partition, the members (indices into live, which
// is sorted by name) that should hold it: the primary first.
func placement(live []member, leaving map[string]bool, replicas, partitions int) [][]int {
	var eligible []int
	for i, m := range live {
		if !leaving[m.name] {
			eligible = append(eligible, i)
		}
	}
	if len(eligible) == 0 { // everyone is leaving: keep the data where it is
		for i := range live {
			eligible = append(eligible, i)
		}
	}
	cm := make([]consistent.Member, len(eligible))
	byName := make(map[string]int, len(eligible))
	for k, i := range eligible {
		cm[k] = live[i]
		byName[live[i].name] = i
	}
	c := consistent.New(cm, consistent.Config{Hasher: xxhasher{}, PartitionCount: partitions, ReplicationFactor: 20, Load: 1.25})
	n := min(replicas, len(eligible))
	out := make([][]int, partitions)
	scores := make([]uint64, len(live))
	for p := range partitions {
		primary := byName[c.GetPartitionOwner(p).String()]
		want := append(make([]int, 0, n), primary)
		for _, i := range eligible {
			scores[i] = mix64(uint64(p)*0x9e3779b97f4a7c15 ^ hashKey(live[i].name))
		}
		rest := slices.DeleteFunc(slices.Clone(eligible), func(i int) bool { return i == primary })
		slices.SortFunc(rest, func(a, b int) int {
			switch {
			case scores[a] > scores[b]:
				return -1
			case scores[a] < scores[b]:
				return 1
			}
			return 0
		})
		out[p] = append(want, rest[:n-1]...)
	}
	return out
}

type xxhasher struct{}

func (xxhasher) Sum64(b []byte) uint64 { return xxhash.Sum64(b) }

// hashKey is the hash of a key or a member name: a key's partition is its
// hash modulo the partition count (as consistent's FindPartitionID picks
// it), and the store's index files it under the same hash.
func hashKey(s string) uint64 { return xxhash.Sum64String(s) }

// mix64 scrambles the bits of x (the SplitMix64 finaliser).
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// tableWire is a table as it travels between nodes.
type tableWire struct {
	_msgpack    struct{} `msgpack:",as_array"`
	Version     uint64
	Coordinator string
	Line        []string
	Members     [][4]any // name, addr, start, since
	Owners      [][]uint16
	Pending     [][]uint16
}

func encodeTable(t *table) []byte {
	w := tableWire{Version: t.version, Coordinator: t.coordinator, Line: append([]string{}, t.line...), Owners: make([][]uint16, len(t.owners)), Pending: make([][]uint16, len(t.pending))}
	for _, m := range t.members {
		w.Members = append(w.Members, [4]any{m.name, m.addr, m.start, m.since})
	}
	for p := range t.owners {
		w.Owners[p] = toUint16(t.owners[p])
		w.Pending[p] = toUint16(t.pending[p])
	}
	b, _ := msgpack.Marshal(&w) // strings and integers always encode
	return b
}

func toUint16(s []int) []uint16 {
	out := make([]uint16, len(s))
	for i, v := range s {
		out[i] = uint16(v)
	}
	return out
}

var errBadTable = errors.New("ghost: malformed partition table")

// decodeTable decodes and checks a table from a peer, checking every
// length against the bytes left before allocating.
func decodeTable(b []byte, partitions int) (*table, error) {
	t, err := readTable(&msgReader{b: b}, partitions)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errBadTable, err)
	}
	return t, nil
}

func readTable(r *msgReader, partitions int) (*table, error) {
	if n, err := r.arrayLen(); err != nil || n != 6 {
		return nil, fmt.Errorf("%d fields (%v)", n, err)
	}
	t := &table{owners: make([][]int, partitions), pending: make([][]int, partitions)}
	var err error
	if t.version, err = r.uint(math.MaxUint64); err != nil {
		return nil, err
	}
	if t.coordinator, err = r.str(); err != nil {
		return nil, err
	}
	lineCount, err := r.arrayLen()
	if err != nil || lineCount > lineLength {
		return nil, fmt.Errorf("a line of %d tables (%v)", lineCount, err)
	}
	t.line = make([]string, lineCount)
	for i := range t.line {
		if t.line[i], err = r.str(); err != nil {
			return nil, err
		}
	}
	count, err := r.arrayLen()
	if err != nil || count == 0 {
		return nil, fmt.Errorf("%d members (%v)", count, err)
	}
	t.members = make([]member, count)
	for i := range t.members {
		if t.members[i], err = readMember(r); err != nil {
			return nil, err
		}
	}
	if !slices.IsSortedFunc(t.members, func(a, b member) int { return strings.Compare(a.name, b.name) }) {
		return nil, errors.New("members not sorted")
	}
	for _, lists := range [][][]int{t.owners, t.pending} {
		if n, err := r.arrayLen(); err != nil || n != partitions {
			return nil, fmt.Errorf("%d partitions, want %d (%v)", n, partitions, err)
		}
		for p := range lists {
			if lists[p], err = readIndices(r, len(t.members)); err != nil {
				return nil, fmt.Errorf("partition %d: %w", p, err)
			}
		}
	}
	for p := range t.owners {
		if len(t.owners[p]) == 0 {
			return nil, fmt.Errorf("partition %d has no owner", p)
		}
	}
	return t, nil
}

func readMember(r *msgReader) (member, error) {
	var m member
	if n, err := r.arrayLen(); err != nil || n != 4 {
		return m, fmt.Errorf("malformed member (%d fields, %v)", n, err)
	}
	var err error
	if m.name, err = r.str(); err != nil {
		return m, err
	}
	if m.addr, err = r.str(); err != nil {
		return m, err
	}
	if m.start, err = r.int(); err != nil {
		return m, err
	}
	m.since, err = r.uint(math.MaxUint64)
	return m, err
}

func readIndices(r *msgReader, members int) ([]int, error) {
	n, err := r.arrayLen()
	if err != nil {
		return nil, err
	}
	out := make([]int, n)
	for i := range out {
		v, err := r.uint(uint64(members - 1))
		if err != nil {
			return nil, fmt.Errorf("member index: %w", err)
		}
		out[i] = int(v)
	}
	return out, nil
}
