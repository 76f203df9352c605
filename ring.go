package ghost

import (
	"fmt"
	"slices"
	"strings"

	"github.com/buraksezer/consistent"
	"github.com/cespare/xxhash/v2"
)

// Members and the partition table: which member owns each partition, and
// which members a call falls back to.

// replicas is how many members each partition lists: its owner, then the
// members a call falls back to when the owner cannot be reached.
const replicas = 3

type member struct {
	name string // memberlist name, unique per process start
	addr string // host:port
}

// String makes member a consistent.Member.
func (m member) String() string { return m.name }

// ring is an immutable snapshot of membership and partition ownership.
type ring struct {
	members []member // sorted by name
	owners  [][]int  // per partition: indices into members, owner first
}

type xxhasher struct{}

func (xxhasher) Sum64(b []byte) uint64 { return xxhash.Sum64(b) }

func newRing(members []member, self string, partitions int) *ring {
	members = slices.Clone(members)
	slices.SortFunc(members, func(a, b member) int { return strings.Compare(a.name, b.name) })
	cm := make([]consistent.Member, len(members))
	index := make(map[string]int, len(members))
	for i, m := range members {
		cm[i] = m
		index[m.name] = i
	}
	c := consistent.New(cm, consistent.Config{
		Hasher:            xxhasher{},
		PartitionCount:    partitions,
		ReplicationFactor: 20,
		Load:              1.25,
	})
	n := min(replicas, len(members))
	r := &ring{members: members, owners: make([][]int, partitions)}
	flat := make([]int, 0, partitions*n)
	for p := range partitions {
		closest, err := c.GetClosestNForPartition(p, n)
		if err != nil {
			panic(fmt.Sprintf("ghost: ring of %d members: %v", len(members), err)) // n never exceeds the members
		}
		start := len(flat)
		for _, m := range closest {
			flat = append(flat, index[m.String()])
		}
		r.owners[p] = flat[start:len(flat):len(flat)]
	}
	return r
}

func sameMembers(a, b []member) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
