package ghost

import (
	"fmt"
	"slices"
	"testing"
)

func testMembers(n int) []member {
	out := make([]member, n)
	for i := range out {
		out[i] = member{name: fmt.Sprintf("127.0.0.1:%d#%04x", 7000+i, i*7919), addr: fmt.Sprintf("127.0.0.1:%d", 7000+i), start: int64(i)}
	}
	return out
}

// settle plans from base for live and completes every transfer, as the
// coordinator would once the copies are filled.
// The primary a partition had stays a copy for one table after the
// switch, so settle plans until the layout holds still.
func settle(base *table, live []member, leaving map[string]bool, replicas int) *table {
	for {
		next, targets := plan(base, live, leaving, replicas)
		for p := range next.pending {
			for len(next.pending[p]) > 0 {
				next = next.promote(p, next.pending[p][0], targets)
			}
		}
		next.version = base.version + 1
		if next.sameLayout(base) {
			return next
		}
		base = next
	}
}

func grow(t *testing.T, size, replicas int) *table {
	t.Helper()
	ms := testMembers(size)
	tb := singleTable(ms[0], 271)
	for i := 2; i <= size; i++ {
		tb = settle(tb, ms[:i], nil, replicas)
	}
	return tb
}

func TestPlacementSpreadsBackups(t *testing.T) {
	tb := grow(t, 10, 2)
	backupsOf := map[int]map[int]bool{}
	for p := range tb.owners {
		if len(tb.owners[p]) != 2 || len(tb.pending[p]) != 0 {
			t.Fatalf("partition %d: owners %v pending %v", p, tb.owners[p], tb.pending[p])
		}
		prim, backup := tb.owners[p][0], tb.owners[p][1]
		if backupsOf[prim] == nil {
			backupsOf[prim] = map[int]bool{}
		}
		backupsOf[prim][backup] = true
	}
	for prim, bs := range backupsOf {
		// consistent's GetClosestN would give exactly one.
		if len(bs) < 4 {
			t.Errorf("the partitions of member %d have their backups on only %d members", prim, len(bs))
		}
	}
}

func TestPlanMovesFewCopies(t *testing.T) {
	for _, size := range []int{3, 5, 10} {
		tb := grow(t, size, 2)
		ms := testMembers(size + 1)
		next, _ := plan(tb, ms, nil, 2)
		added := 0
		for p := range next.pending {
			added += len(next.pending[p])
		}
		ideal := 2 * 271 / (size + 1) // the newcomer's fair share of copies
		t.Logf("%d → %d members: %d copies to fill, fair share %d", size, size+1, added, ideal)
		if added > 2*ideal {
			t.Errorf("%d → %d members moves %d copies, more than twice the fair share %d", size, size+1, added, ideal)
		}
	}
}

func TestPlanPromotesABackupWhenTheOwnerDies(t *testing.T) {
	tb := grow(t, 5, 2)
	ms := testMembers(5)
	dead := ms[2].name
	next, _ := plan(tb, slices.Delete(slices.Clone(ms), 2, 3), nil, 2)
	for p := range tb.owners {
		if tb.members[tb.owners[p][0]].name != dead {
			continue
		}
		backup := tb.members[tb.owners[p][1]].name
		if got := next.members[next.owners[p][0]].name; got != backup {
			t.Fatalf("partition %d: new primary %s, want its backup %s promoted", p, got, backup)
		}
		if len(next.pending[p]) != 1 {
			t.Fatalf("partition %d: %d copies to fill, want 1", p, len(next.pending[p]))
		}
	}
}

func TestPlanHandsOffALeavingMember(t *testing.T) {
	tb := grow(t, 4, 2)
	ms := testMembers(4)
	next := settle(tb, ms, map[string]bool{ms[1].name: true}, 2)
	for p := range next.owners {
		if slices.Contains(next.owners[p], next.index(ms[1].name)) {
			t.Fatalf("partition %d is still held by the leaving member", p)
		}
	}
}

func TestTableCodec(t *testing.T) {
	tb := grow(t, 5, 3)
	tb.pending[7] = []int{4}
	tb.coordinator, tb.line = "c2", []string{"c1", "c0"}
	got, err := decodeTable(encodeTable(tb), 271)
	if err != nil {
		t.Fatal(err)
	}
	if got.version != tb.version || got.coordinator != tb.coordinator || !slices.Equal(got.line, tb.line) || !got.sameLayout(tb) {
		t.Fatal("the table changed on its way")
	}
	for name, b := range map[string][]byte{
		"empty":           nil,
		"garbage":         []byte("\xdd\xff\xff\xff\xff"),
		"wrong partition": encodeTable(grow(t, 2, 2))[:10],
	} {
		if _, err := decodeTable(b, 271); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	if _, err := decodeTable(encodeTable(tb), 100); err == nil {
		t.Error("a table of another partition count was accepted")
	}
	bad := grow(t, 2, 2)
	bad.owners[3] = []int{9}
	if _, err := decodeTable(encodeTable(bad), 271); err == nil {
		t.Error("a member index out of range was accepted")
	}
}

func TestAbandonsTellsLinesOfTablesApart(t *testing.T) {
	cur := &table{version: 7, coordinator: "a", line: []string{"a", "z"}}
	next := &table{version: 8, coordinator: "b", line: cur.following()}
	if !slices.Equal(next.line, []string{"a", "a", "z"}) {
		t.Fatalf("the line of the table after cur is %v", next.line)
	}
	for _, tc := range []struct {
		name string
		next table
		want bool
	}{
		{"the next table planned from cur", table{version: 8, coordinator: "a", line: []string{"a"}}, false},
		{"the next table from a new coordinator that had cur", *next, false},
		{"the next table planned from another table of cur's version", table{version: 8, coordinator: "a", line: []string{"b"}}, true},
		{"another coordinator's table of cur's version", table{version: 7, coordinator: "b"}, true},
		{"a table of cur's line further ahead", table{version: 10, coordinator: "b", line: []string{"b", "b", "a"}}, false},
		{"a table of another line further ahead", table{version: 10, coordinator: "b", line: []string{"b", "b", "b"}}, true},
		{"a table beyond its line's length", table{version: 10, coordinator: "b", line: []string{"b"}}, false},
	} {
		if got := tc.next.abandons(cur); got != tc.want {
			t.Errorf("%s: abandons = %v, want %v", tc.name, got, tc.want)
		}
	}
	long := &table{version: 100, coordinator: "a", line: make([]string, lineLength)}
	if got := len(long.following()); got != lineLength {
		t.Errorf("a line grew to %d tables, want at most %d", got, lineLength)
	}
}

// When a partition's primary changes to a member that was being filled,
// the old primary stays an in-sync copy for that table, so that it learns
// of the change before the new primary acknowledges a write, and is
// dropped by the table after.
func TestOldPrimaryStaysACopyForOneTable(t *testing.T) {
	ms := testMembers(4)
	tb := settle(singleTable(ms[0], 271), ms[:3], nil, 2)
	next, targets := plan(tb, ms, nil, 2)
	moved := 0
	for p := range next.pending {
		oldPrimary := tb.members[tb.primary(p)].name
		for len(next.pending[p]) > 0 {
			next = next.promote(p, next.pending[p][0], targets)
		}
		newPrimary := next.members[next.primary(p)].name
		if newPrimary == oldPrimary {
			continue
		}
		moved++
		if i := next.index(oldPrimary); !slices.Contains(next.owners[p], i) {
			t.Fatalf("partition %d: the old primary %s was dropped as the primary moved to %s", p, oldPrimary, newPrimary)
		}
	}
	if moved == 0 {
		t.Fatal("no primary moved: nothing tested")
	}
	after, _ := plan(next, ms, nil, 2)
	for p := range after.owners {
		if len(after.owners[p]) != 2 {
			t.Fatalf("partition %d keeps %d copies a table later", p, len(after.owners[p]))
		}
	}
}
