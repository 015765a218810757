package cluster

import (
	"fmt"
	"testing"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
)

func members(addrs ...string) pcluster.Members {
	var out pcluster.Members
	for i, a := range addrs {
		out = append(out, &pcluster.Member{Id: fmt.Sprintf("id-%d-%s", i, a), Host: a, Port: 1, Kinds: []string{"k"}})
	}
	return out
}

func TestViewOwnerIsConsistentAndBalanced(t *testing.T) {
	ms := members("a", "b", "c")
	v1 := newView(1, ms, time.Now())
	// Order of members does not matter.
	v2 := newView(1, pcluster.Members{ms[2], ms[0], ms[1]}, time.Now())
	count := map[string]int{}
	for i := 0; i < 3000; i++ {
		id := fmt.Sprintf("order-%d", i)
		o := v1.owner("k", id)
		if o != v2.owner("k", id) {
			t.Fatalf("%s: owners differ between equal views", id)
		}
		count[o]++
	}
	for addr, n := range count {
		if n < 800 || n > 1200 {
			t.Errorf("%s owns %d of 3000 identities, want about 1000", addr, n)
		}
	}
	if o := v1.owner("unknown-kind", "x"); o != "" {
		t.Fatalf("owner of an unhosted kind = %q, want none", o)
	}
}

func TestViewRemovalMovesOnlyThatMembersIdentities(t *testing.T) {
	ms := members("a", "b", "c", "d")
	before := newView(1, ms, time.Now())
	after := newView(2, ms[:3], time.Now()) // d gone
	moved := 0
	for i := 0; i < 2000; i++ {
		id := fmt.Sprintf("x%d", i)
		ob, oa := before.owner("k", id), after.owner("k", id)
		if ob != oa {
			moved++
			if ob != "d:1" {
				t.Fatalf("%s moved from %s to %s although only d left", id, ob, oa)
			}
		}
	}
	if moved == 0 {
		t.Fatal("nothing moved")
	}
}

func TestViewHistorySettle(t *testing.T) {
	t0 := time.Unix(1000, 0)
	settle := time.Second
	ab := members("a", "b")
	abc := members("a", "b", "c")
	h := viewHistory{settle: settle}
	// Find an identity that a owns with and without c, and one that moves from a to c.
	var stays, moves string
	vab, vabc := newView(1, ab, t0), newView(2, abc, t0)
	for i := 0; stays == "" || moves == ""; i++ {
		id := fmt.Sprintf("i%d", i)
		switch {
		case vab.owner("k", id) == "a:1" && vabc.owner("k", id) == "a:1":
			stays = id
		case vab.owner("k", id) == "a:1" && vabc.owner("k", id) == "c:1":
			moves = id
		}
	}
	if h.ownedThroughout("a:1", "k", stays, t0) {
		t.Fatal("owned before any view")
	}
	h.add(newView(1, ab, t0), t0)
	if h.ownedThroughout("a:1", "k", stays, t0.Add(settle/2)) {
		t.Fatal("owned before the first view has settled")
	}
	if !h.ownedThroughout("a:1", "k", stays, t0.Add(settle)) {
		t.Fatal("not owned once the first view settled")
	}
	// c joins: a keeps stays, c must wait the settle time for moves.
	t1 := t0.Add(5 * time.Second)
	h.add(newView(2, abc, t1), t1)
	if !h.ownedThroughout("a:1", "k", stays, t1.Add(time.Millisecond)) {
		t.Fatal("a lost an identity that did not move")
	}
	if h.ownedThroughout("a:1", "k", moves, t1) {
		t.Fatal("a still owns an identity that moved to c")
	}
	hc := viewHistory{settle: settle}
	hc.add(newView(2, abc, t1), t1)
	if hc.ownedThroughout("c:1", "k", moves, t1.Add(settle/2)) {
		t.Fatal("c took over before the settle time")
	}
	if !hc.ownedThroughout("c:1", "k", moves, t1.Add(settle)) {
		t.Fatal("c does not own the moved identity after the settle time")
	}
	// Old views are forgotten.
	h.add(newView(2, abc, t1.Add(10*time.Second)), t1.Add(10*time.Second))
	if len(h.views) > 2 {
		t.Fatalf("history keeps %d views", len(h.views))
	}
}

// TestOwnerAmong agrees with the view every member computes.
func TestOwnerAmong(t *testing.T) {
	addrs := []string{"127.0.0.1:8090", "127.0.0.2:8090", "127.0.0.3:8090"}
	var ms pcluster.Members
	for i, a := range addrs {
		host, port, _ := splitHostPort(a)
		ms = append(ms, &pcluster.Member{Id: fmt.Sprint("m", i), Host: host, Port: int32(port), Kinds: []string{"Order"}})
	}
	v := newView(1, ms, time.Now())
	seen := map[string]bool{}
	for k := range 100 {
		id := fmt.Sprintf("o_%d", k)
		got, want := OwnerAmong(id, addrs), v.owner("Order", id)
		seen[got] = true
		if got != want {
			t.Fatalf("OwnerAmong(%s) = %s, the view says %s", id, got, want)
		}
	}
	if len(seen) != 3 {
		t.Fatalf("owners %v, want all three", seen)
	}
	if OwnerAmong("x", nil) != "" {
		t.Fatal("an owner among no members")
	}
}
