package cluster

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"slices"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
)

// view is one member's picture of the cluster: the protoactor topology after block-list filtering, and the
// rendezvous hashing that makes every member with the same view agree on each identity's owner. Immutable.
type view struct {
	hash    uint64              // protoactor topology hash (member ids)
	members []*pcluster.Member  // sorted by id
	byKind  map[string][]string // kind → distinct remote addresses of the members hosting it, sorted
	at      time.Time           // when this member installed the view
}

func newView(hash uint64, members pcluster.Members, at time.Time) *view {
	v := &view{hash: hash, members: slices.Clone(members), byKind: map[string][]string{}, at: at}
	slices.SortFunc(v.members, func(a, b *pcluster.Member) int { return compareStrings(a.Id, b.Id) })
	for _, m := range v.members {
		addr := m.Address()
		for _, k := range m.Kinds {
			if !slices.Contains(v.byKind[k], addr) {
				v.byKind[k] = append(v.byKind[k], addr)
			}
		}
	}
	for k := range v.byKind {
		slices.Sort(v.byKind[k])
	}
	return v
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// owner returns the remote address of the member that owns identity of kind, or "" if no member hosts kind.
// Owners are chosen by rendezvous (highest random weight) hashing over remote addresses: a member restarted on
// the same address owns the same identities again, and a membership change moves only the identities of the
// member that came or went.
func (v *view) owner(kind, identity string) string {
	var best string
	var bestScore uint64
	for _, addr := range v.byKind[kind] {
		s := score(identity, addr)
		if best == "" || s > bestScore || (s == bestScore && addr < best) {
			best, bestScore = addr, s
		}
	}
	return best
}

// score hashes (identity, address) with FNV-1a and a splitmix64 finaliser (FNV alone clusters on short keys).
func score(identity, addr string) uint64 {
	h := fnv.New64a()
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(identity)))
	_, _ = h.Write(n[:])
	_, _ = h.Write([]byte(identity))
	_, _ = h.Write([]byte(addr))
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// viewHistory keeps the views a member installed recently, to decide whether it has owned an identity
// throughout the settle window (see Config.TopologySettle). Confined to the placement actor.
type viewHistory struct {
	settle time.Duration
	views  []*view // oldest first
}

// add installs v and forgets views that ended before the settle window of now.
func (h *viewHistory) add(v *view, now time.Time) {
	h.views = append(h.views, v)
	cut := now.Add(-h.settle)
	// views[i] was current during [views[i].at, views[i+1].at); drop it when that interval ended before cut.
	drop := 0
	for drop+1 < len(h.views) && !h.views[drop+1].at.After(cut) {
		drop++
	}
	h.views = slices.Delete(h.views, 0, drop)
}

// ownedThroughout reports whether self owned identity in every view that was current at some time in
// [now-settle, now]. Before the first view nothing was owned, so a member that just joined waits out the settle
// time before taking over identities: their previous owners learn about it and passivate meanwhile.
func (h *viewHistory) ownedThroughout(self, kind, identity string, now time.Time) bool {
	if len(h.views) == 0 {
		return false
	}
	cut := now.Add(-h.settle)
	if h.views[0].at.After(cut) {
		return false
	}
	for i, v := range h.views {
		if i+1 < len(h.views) && !h.views[i+1].at.After(cut) {
			continue // ended before the window
		}
		if v.owner(kind, identity) != self {
			return false
		}
	}
	return true
}

// hashStrings hashes a list of strings (order matters) with FNV-1a; 0 for none.
func hashStrings(ss []string) uint64 {
	if len(ss) == 0 {
		return 0
	}
	h := fnv.New64a()
	for _, s := range ss {
		_, _ = h.Write([]byte(s))
		_, _ = h.Write([]byte{0})
	}
	return h.Sum64()
}

// OwnerAmong returns which of remoteAddrs (the protoactor remote addresses of the serving members that host the
// identity's kind) owns identity: the address every member with that view activates it on. Tools and tests use
// it to tell which node hosts an identity; "" when remoteAddrs is empty.
func OwnerAmong(identity string, remoteAddrs []string) string {
	const kind = "k"
	members := make(pcluster.Members, 0, len(remoteAddrs))
	for i, a := range remoteAddrs {
		host, port, err := splitHostPort(a)
		if err != nil {
			continue
		}
		members = append(members, &pcluster.Member{Id: fmt.Sprint(i), Host: host, Port: int32(port), Kinds: []string{kind}})
	}
	return newView(0, members, time.Time{}).owner(kind, identity)
}
