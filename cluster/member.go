package cluster

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/hashicorp/memberlist"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Member statuses, as memberlist sees them.
const (
	StatusAlive   = "alive"
	StatusSuspect = "suspect"
	StatusDead    = "dead"
	StatusLeft    = "left"
)

// Member is one node of the cluster as this node sees it.
type Member struct {
	ID         string   // protoactor member id: the actor system id, fresh for every start and self-fence
	Name       string   // memberlist node name (equal to ID)
	GossipAddr string   // memberlist host:port
	RemoteAddr string   // protoactor remote host:port
	Status     string   // StatusAlive, StatusSuspect, StatusDead or StatusLeft
	Kinds      []string // actor kinds it hosts, sorted
	Self       bool     // this node
	Draining   bool     // it is draining (Node.Drain): it owns no identity any more and is about to leave

	// Activations counts the member's local activations by kind: this node's own count for itself, and what
	// each other member last announced in its metadata (it announces a change within about
	// TopologyRefreshInterval plus a few gossip rounds). nil when unknown: a suspect member (it has not answered
	// memberlist's probes, so its last count may be stale) or one that has announced none yet.
	Activations map[string]int

	// Attributes are what the member advertises of itself (its Config.Attributes), e.g. the journal it uses.
	Attributes map[string]string
}

// memberMeta is what a member announces in its memberlist metadata: protoactor's Member message (id, remote
// host/port, kinds), so the topology handed to protoactor is exactly what the member announced, followed by our
// own fields in protobuf field numbers protoactor's message does not use. protoactor keeps them as unknown fields
// and ignores them; a member that does not know them decodes the rest.
type memberMeta struct {
	pm          *pcluster.Member
	attributes  map[string]string
	draining    bool
	activations map[string]int // nil: not announced
}

// Field numbers of our extensions to protoactor's Member message.
const (
	metaFieldAttribute protowire.Number = 1001 // repeated bytes: one key=value attribute
	metaFieldDraining  protowire.Number = 1002 // bool: the member is draining
	// bytes: the member's activations by kind, "kind=count" joined by ","; present (maybe empty) once announced
	metaFieldActivations protowire.Number = 1003
)

// encodeMeta encodes the memberlist node metadata of a member (see memberMeta).
func encodeMeta(m *pcluster.Member) ([]byte, error) {
	return encodeMemberMeta(memberMeta{pm: m})
}

func encodeMemberMeta(mm memberMeta) ([]byte, error) {
	pm := proto.Clone(mm.pm).(*pcluster.Member)
	pm.ProtoReflect().SetUnknown(nil)
	b, err := proto.Marshal(pm)
	if err != nil {
		return nil, fmt.Errorf("encode member metadata: %w", err)
	}
	keys := make([]string, 0, len(mm.attributes))
	for k := range mm.attributes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b = protowire.AppendTag(b, metaFieldAttribute, protowire.BytesType)
		b = protowire.AppendString(b, k+"="+mm.attributes[k])
	}
	if mm.draining {
		b = protowire.AppendTag(b, metaFieldDraining, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	if mm.activations != nil {
		kinds := slices.Sorted(maps.Keys(mm.activations))
		var sb strings.Builder
		for i, k := range kinds {
			if i > 0 {
				sb.WriteByte(',')
			}
			sb.WriteString(k)
			sb.WriteByte('=')
			sb.WriteString(strconv.Itoa(mm.activations[k]))
		}
		b = protowire.AppendTag(b, metaFieldActivations, protowire.BytesType)
		b = protowire.AppendString(b, sb.String())
	}
	if len(b) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("encode member metadata: %d bytes, memberlist allows %d (too many kinds?)", len(b), memberlist.MetaMaxSize)
	}
	return b, nil
}

// decodeMeta decodes the metadata of a memberlist node and checks that it names that node.
func decodeMeta(name string, meta []byte) (*pcluster.Member, error) {
	mm, err := decodeMemberMeta(name, meta)
	if err != nil {
		return nil, err
	}
	return mm.pm, nil
}

// decodeMemberMeta decodes the metadata of a memberlist node, our extensions included, and checks that it names
// that node. The returned Member carries no unknown fields.
func decodeMemberMeta(name string, meta []byte) (memberMeta, error) {
	m, err := decodeProtoactorMeta(name, meta)
	if err != nil {
		return memberMeta{}, err
	}
	mm := memberMeta{pm: m}
	rest := m.ProtoReflect().GetUnknown()
	m.ProtoReflect().SetUnknown(nil)
	for len(rest) > 0 {
		num, typ, n := protowire.ConsumeTag(rest)
		if n < 0 {
			return memberMeta{}, fmt.Errorf("decode member metadata: %w", protowire.ParseError(n))
		}
		rest = rest[n:]
		switch {
		case num == metaFieldAttribute && typ == protowire.BytesType:
			v, n := protowire.ConsumeString(rest)
			if n < 0 {
				return memberMeta{}, fmt.Errorf("decode member metadata: %w", protowire.ParseError(n))
			}
			rest = rest[n:]
			key, value, _ := strings.Cut(v, "=")
			if mm.attributes == nil {
				mm.attributes = map[string]string{}
			}
			mm.attributes[key] = value
		case num == metaFieldDraining && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(rest)
			if n < 0 {
				return memberMeta{}, fmt.Errorf("decode member metadata: %w", protowire.ParseError(n))
			}
			rest = rest[n:]
			mm.draining = v != 0
		case num == metaFieldActivations && typ == protowire.BytesType:
			v, n := protowire.ConsumeString(rest)
			if n < 0 {
				return memberMeta{}, fmt.Errorf("decode member metadata: %w", protowire.ParseError(n))
			}
			rest = rest[n:]
			act, err := parseActivations(v)
			if err != nil {
				return memberMeta{}, fmt.Errorf("decode member metadata: %w", err)
			}
			mm.activations = act
		default: // a field of a newer build: skip it
			n := protowire.ConsumeFieldValue(num, typ, rest)
			if n < 0 {
				return memberMeta{}, fmt.Errorf("decode member metadata: %w", protowire.ParseError(n))
			}
			rest = rest[n:]
		}
	}
	return mm, nil
}

// parseActivations parses "kind=count,kind=count" (empty: none).
func parseActivations(v string) (map[string]int, error) {
	out := map[string]int{}
	if v == "" {
		return out, nil
	}
	for _, kv := range strings.Split(v, ",") {
		k, c, ok := strings.Cut(kv, "=")
		n, err := strconv.Atoi(c)
		if !ok || k == "" || err != nil || n < 0 {
			return nil, fmt.Errorf("bad activation count %q", kv)
		}
		out[k] = n
	}
	return out, nil
}

func decodeProtoactorMeta(name string, meta []byte) (*pcluster.Member, error) {
	if len(meta) == 0 {
		return nil, errors.New("decode member metadata: empty")
	}
	var m pcluster.Member
	if err := proto.Unmarshal(meta, &m); err != nil {
		return nil, fmt.Errorf("decode member metadata: %w", err)
	}
	if m.Id != name {
		return nil, fmt.Errorf("decode member metadata: id %q differs from node name %q", m.Id, name)
	}
	if m.Host == "" || m.Port <= 0 {
		return nil, fmt.Errorf("decode member metadata: bad remote address %q", m.Address())
	}
	return &m, nil
}

// memberOf builds the Member view of a memberlist node in state (memberlist's own record: the Node copies it
// hands out never carry it, see third_party/memberlist/PATCHES.md). Nodes whose metadata does not decode still
// show up, with what memberlist knows. A suspect member's activations are left unknown.
func memberOf(n *memberlist.Node, state memberlist.NodeStateType, self string) Member {
	m := Member{
		ID:         n.Name,
		Name:       n.Name,
		GossipAddr: net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port))),
		Status:     statusOf(state),
		Self:       n.Name == self,
	}
	if mm, err := decodeMemberMeta(n.Name, n.Meta); err == nil {
		m.RemoteAddr = mm.pm.Address()
		m.Kinds = append([]string(nil), mm.pm.Kinds...)
		sort.Strings(m.Kinds)
		m.Draining = mm.draining
		m.Attributes = mm.attributes
		if m.Status == StatusAlive {
			m.Activations = mm.activations
		}
	}
	return m
}

// statusOf names a memberlist node state.
func statusOf(s memberlist.NodeStateType) string {
	switch s {
	case memberlist.StateSuspect:
		return StatusSuspect
	case memberlist.StateDead:
		return StatusDead
	case memberlist.StateLeft:
		return StatusLeft
	}
	return StatusAlive
}

// topologyMembers turns memberlist's live nodes into the protoactor topology: every alive or suspect node whose
// metadata decodes. bad receives the nodes that were skipped.
func topologyMembers(nodes []*memberlist.Node, bad func(name string, err error)) pcluster.Members {
	metas := liveMetas(nodes, bad)
	out := make(pcluster.Members, 0, len(metas))
	for _, mm := range metas {
		out = append(out, mm.pm)
	}
	return out
}

// liveMetas decodes the metadata of every alive or suspect node. bad receives the nodes whose metadata does not
// decode (they are skipped).
func liveMetas(nodes []*memberlist.Node, bad func(name string, err error)) []memberMeta {
	out := make([]memberMeta, 0, len(nodes))
	for _, n := range nodes {
		if n.State != memberlist.StateAlive && n.State != memberlist.StateSuspect {
			continue
		}
		mm, err := decodeMemberMeta(n.Name, n.Meta)
		if err != nil {
			if bad != nil {
				bad(n.Name, err)
			}
			continue
		}
		out = append(out, mm)
	}
	return out
}
