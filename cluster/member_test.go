package cluster

import (
	"fmt"
	"maps"
	"strings"
	"testing"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/hashicorp/memberlist"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

func TestMetaRoundTrip(t *testing.T) {
	in := &pcluster.Member{Id: "m1", Host: "10.0.0.7", Port: 8090, Kinds: []string{"Restaurant", "Order"}}
	b, err := encodeMeta(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := decodeMeta("m1", b)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(in, out) {
		t.Fatalf("round trip: got %v, want %v", out, in)
	}
}

func TestMetaErrors(t *testing.T) {
	many := make([]string, 60)
	for i := range many {
		many[i] = fmt.Sprintf("SomeRatherLongKindName%02d", i)
	}
	if _, err := encodeMeta(&pcluster.Member{Id: "m", Host: "h", Port: 1, Kinds: many}); err == nil || !strings.Contains(err.Error(), "memberlist allows 512") {
		t.Fatalf("oversized metadata: err = %v", err)
	}
	good, _ := encodeMeta(&pcluster.Member{Id: "m1", Host: "h", Port: 1})
	noAddr, _ := encodeMeta(&pcluster.Member{Id: "m1"})
	for _, tc := range []struct {
		name, node string
		meta       []byte
		want       string
	}{
		{"empty", "m1", nil, "empty"},
		{"garbage", "m1", []byte{0xff, 0xff, 0xff}, "decode member metadata"},
		{"other id", "m2", good, `id "m1" differs from node name "m2"`},
		{"no address", "m1", noAddr, "bad remote address"},
	} {
		if _, err := decodeMeta(tc.node, tc.meta); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

func node(name string, m *pcluster.Member, state memberlist.NodeStateType) *memberlist.Node {
	n := &memberlist.Node{Name: name, State: state}
	if m != nil {
		n.Meta, _ = encodeMeta(m)
	}
	return n
}

func TestTopologyMembers(t *testing.T) {
	a := &pcluster.Member{Id: "a", Host: "127.0.0.1", Port: 1, Kinds: []string{"k"}}
	b := &pcluster.Member{Id: "b", Host: "127.0.0.1", Port: 2, Kinds: []string{"k"}}
	var bad []string
	got := topologyMembers([]*memberlist.Node{
		node("a", a, memberlist.StateAlive),
		node("b", b, memberlist.StateSuspect),
		node("c", nil, memberlist.StateAlive),                                          // no metadata
		node("d", &pcluster.Member{Id: "d", Host: "h", Port: 3}, memberlist.StateDead), // dead
	}, func(name string, err error) { bad = append(bad, name) })
	if len(got) != 2 || got[0].Id != "a" || got[1].Id != "b" {
		t.Fatalf("topology = %v, want a and b", got)
	}
	if len(bad) != 1 || bad[0] != "c" {
		t.Fatalf("skipped = %v, want [c]", bad)
	}
}

// TestMetaExtensions: attributes and the draining flag ride in field numbers protoactor's Member does not use;
// protoactor's own decoder still reads the member, and ours reads them back.
func TestMetaExtensions(t *testing.T) {
	pm := &pcluster.Member{Id: "m1", Host: "10.0.0.7", Port: 8090, Kinds: []string{"Order"}}
	b, err := encodeMemberMeta(memberMeta{pm: pm, attributes: map[string]string{"journal": "postgres:abc", "zone": "a=b"}, draining: true})
	if err != nil {
		t.Fatal(err)
	}
	var plain pcluster.Member
	if err := proto.Unmarshal(b, &plain); err != nil || plain.Id != "m1" || plain.Port != 8090 || len(plain.Kinds) != 1 {
		t.Fatalf("protoactor's decoding: %v %v", &plain, err)
	}
	mm, err := decodeMemberMeta("m1", b)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(mm.pm, pm) || len(mm.pm.ProtoReflect().GetUnknown()) != 0 {
		t.Fatalf("member %v, want %v without unknown fields", mm.pm, pm)
	}
	if !mm.draining || mm.attributes["journal"] != "postgres:abc" || mm.attributes["zone"] != "a=b" || len(mm.attributes) != 2 {
		t.Fatalf("extensions: draining %v, attributes %v", mm.draining, mm.attributes)
	}
	// A field of a newer build is skipped.
	newer := protowire.AppendTag(append([]byte(nil), b...), 1999, protowire.VarintType)
	newer = protowire.AppendVarint(newer, 7)
	if mm, err := decodeMemberMeta("m1", newer); err != nil || !mm.draining {
		t.Fatalf("with an unknown field: %v %v", mm, err)
	}
	m := memberOf(&memberlist.Node{Name: "m1", Meta: b}, memberlist.StateAlive, "other")
	if !m.Draining || m.Attributes["journal"] != "postgres:abc" || m.RemoteAddr != "10.0.0.7:8090" || m.Status != StatusAlive {
		t.Fatalf("memberOf: %+v", m)
	}
	if m.Activations != nil {
		t.Fatalf("activations %v before any were announced, want unknown (nil)", m.Activations)
	}
}

// TestMetaActivations: the activation counts ride in the metadata (an empty count is known, not missing); a
// suspect member's counts are reported unknown, with its status.
func TestMetaActivations(t *testing.T) {
	pm := &pcluster.Member{Id: "m1", Host: "10.0.0.7", Port: 8090, Kinds: []string{"Order", "Restaurant"}}
	for _, want := range []map[string]int{{}, {"Order": 3}, {"Order": 12, "Restaurant": 7}} {
		b, err := encodeMemberMeta(memberMeta{pm: pm, activations: want, draining: true})
		if err != nil {
			t.Fatal(err)
		}
		m := memberOf(&memberlist.Node{Name: "m1", Meta: b}, memberlist.StateAlive, "other")
		if m.Activations == nil || !maps.Equal(m.Activations, want) || !m.Draining {
			t.Fatalf("activations %v (draining %v), want %v", m.Activations, m.Draining, want)
		}
		s := memberOf(&memberlist.Node{Name: "m1", Meta: b}, memberlist.StateSuspect, "other")
		if s.Status != StatusSuspect || s.Activations != nil {
			t.Fatalf("suspect member: status %q, activations %v; want suspect, unknown", s.Status, s.Activations)
		}
	}
	bad := protowire.AppendTag(nil, metaFieldActivations, protowire.BytesType)
	bad = protowire.AppendString(bad, "Order=x")
	b, _ := encodeMeta(pm)
	if _, err := decodeMemberMeta("m1", append(b, bad...)); err == nil {
		t.Fatal("a bad activation count decoded")
	}
}
