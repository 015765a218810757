package cluster

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/hashicorp/memberlist"
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
}

// encodeMeta encodes the memberlist node metadata of a member: protoactor's own Member message (id, host, port,
// kinds), so the topology handed to protoactor is exactly what the member announced.
func encodeMeta(m *pcluster.Member) ([]byte, error) {
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode member metadata: %w", err)
	}
	if len(b) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("encode member metadata: %d bytes, memberlist allows %d (too many kinds?)", len(b), memberlist.MetaMaxSize)
	}
	return b, nil
}

// decodeMeta decodes the metadata of a memberlist node and checks that it names that node.
func decodeMeta(name string, meta []byte) (*pcluster.Member, error) {
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

// memberOf builds the Member view of a memberlist node. Nodes whose metadata does not decode still show up, with
// what memberlist knows.
func memberOf(n *memberlist.Node, self string) Member {
	m := Member{
		ID:         n.Name,
		Name:       n.Name,
		GossipAddr: net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port))),
		Status:     StatusAlive, // memberlist does not maintain Node.State in the copies it hands out

		Self: n.Name == self,
	}
	if pm, err := decodeMeta(n.Name, n.Meta); err == nil {
		m.RemoteAddr = pm.Address()
		m.Kinds = append([]string(nil), pm.Kinds...)
		sort.Strings(m.Kinds)
	}
	return m
}

// topologyMembers turns memberlist's live nodes into the protoactor topology: every alive or suspect node whose
// metadata decodes. bad receives the nodes that were skipped.
func topologyMembers(nodes []*memberlist.Node, bad func(name string, err error)) pcluster.Members {
	out := make(pcluster.Members, 0, len(nodes))
	for _, n := range nodes {
		if n.State != memberlist.StateAlive && n.State != memberlist.StateSuspect {
			continue
		}
		m, err := decodeMeta(n.Name, n.Meta)
		if err != nil {
			if bad != nil {
				bad(n.Name, err)
			}
			continue
		}
		out = append(out, m)
	}
	return out
}
