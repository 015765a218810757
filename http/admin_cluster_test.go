package http_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/platterhq/platter/cluster"
	"github.com/platterhq/platter/cluster/clustertest"
	"github.com/platterhq/platter/http"
)

// adminMember is one member of GET /v1/admin/cluster (activations null: unknown).
type adminMember struct {
	ID          string         `json:"id"`
	Status      string         `json:"status"`
	Self        bool           `json:"self"`
	Activations map[string]int `json:"activations"`
}

// TestAdminClusterMembers: GET /v1/admin/cluster of a node of a real three-member cluster lists every member with
// its status and its activations per kind, which match where the identities live; a paused member is listed as
// suspect, without counts. Every answer is checked against openapi.json (doRequest).
func TestAdminClusterMembers(t *testing.T) {
	c := clustertest.New(t, 3)
	h := newHarness(t, func(_ *harness, _ *http.Config, b *http.Backend) {
		b.Cluster = http.NewClusterBackend(c.Node(0), nil, nil, 0).Cluster
	})
	reg := c.Registry()
	ids := make([]string, 45)
	for k := range ids {
		ids[k] = fmt.Sprintf("admin-%02d", k)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := c.Request(ctx, k%3, ids[k])
		cancel()
		if err != nil {
			t.Fatalf("request %s: %v", ids[k], err)
		}
	}
	list := func() []adminMember {
		res := h.do(t, "GET", "/v1/admin/cluster", "", nil, as(operator)...)
		if res.status != 200 {
			t.Fatalf("status %d: %s", res.status, res.body)
		}
		var v struct {
			Members []adminMember `json:"members"`
		}
		if err := json.Unmarshal(res.body, &v); err != nil {
			t.Fatal(err)
		}
		return v.Members
	}
	var last string
	err := clustertest.Poll(func() bool {
		want := map[string]int{}
		for _, id := range ids {
			for _, host := range reg.Hosts(id) {
				want[host]++
			}
		}
		ms := list()
		if len(ms) != 3 {
			last = fmt.Sprintf("%d members listed", len(ms))
			return false
		}
		for _, m := range ms {
			if m.Status != cluster.StatusAlive || m.Activations == nil || m.Activations[clustertest.EchoKind] != want[m.ID] {
				last = fmt.Sprintf("member %s: %s with %v, the registry has %d there", m.ID, m.Status, m.Activations, want[m.ID])
				return false
			}
		}
		return true
	}, 10*time.Second)
	if err != nil {
		t.Fatalf("activations per member: %v (last: %s)", err, last)
	}

	paused := c.Node(2).Self().ID
	c.Pause(2)
	err = clustertest.Poll(func() bool {
		for _, m := range list() {
			if m.ID == paused {
				last = fmt.Sprintf("paused member listed as %s with %v", m.Status, m.Activations)
				return m.Status == cluster.StatusSuspect && m.Activations == nil
			}
		}
		last = "paused member not listed"
		return false
	}, 20*time.Second)
	if err != nil {
		t.Fatalf("paused member: %v (last: %s)", err, last)
	}
	c.Resume(2)
	c.WaitConverged(30 * time.Second)
}
