package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/platterhq/platter/http/oauth"
	"github.com/platterhq/platter/node/sim"
)

// TestSimAgainstNode is the simulator's smoke test on the real Main: a few orders, from sign-up to delivery,
// through the real API with OAuth tokens and feeds; every placed order ends and the invariants hold.
func TestSimAgainstNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node and runs the simulator")
	}
	dir := t.TempDir()
	m, _ := newTestMain(t, dir, "--log-level", "info")
	runMain(t, m)
	var creds oauth.Credentials
	b, err := os.ReadFile(filepath.Join(dir, oauth.OperatorCredentialsFile))
	if err != nil || json.Unmarshal(b, &creds) != nil {
		t.Fatalf("operator credentials: %v %s", err, b)
	}
	s, err := sim.New(sim.Config{
		Targets: []string{m.URL()}, OperatorID: creds.ClientID, OperatorSecret: creds.ClientSecret, SpreadLogins: true,
		// One ring of cells around the centre, a restaurant and a dasher in each: every customer finds food and
		// every order a dasher nearby.
		GridRadius: 1, Restaurants: 7, Dashers: 7, Customers: 4, MoveEvery: time.Minute,
		Rate: 2, Duration: 2 * time.Second, CustomerGap: time.Second,
		PrepTime: 100 * time.Millisecond, TravelTime: 100 * time.Millisecond, PollWait: 5 * time.Second, Drain: 15 * time.Second,
		RejectShare: -1, CancelShare: -1, DeclineShare: -1, Seed: 3, SetupConcurrency: 4,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := s.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	r.WriteText(&text)
	t.Logf("report:\n%s", text.String())
	if r.Placed != r.Arrivals || r.Delivered != r.Placed || !r.Invariants.OK() {
		t.Fatalf("placed %d, delivered %d, invariants %v", r.Placed, r.Delivered, r.Invariants.Violations)
	}
	for _, step := range []string{"oauth.authorize", "oauth.code_exchange", "oauth.client_credentials", "dasher.delivered", "restaurant.picked_up"} {
		if r.Step(step).Count == 0 {
			t.Fatalf("no %s", step)
		}
	}
	if strings.Contains(text.String(), "INTERNAL") {
		t.Fatalf("internal errors")
	}
}
