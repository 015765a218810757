package http_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/platterhq/platter/http"
)

// fakeAccounts is an Accounts that makes a new client, with a new secret, on every CreateStaffClient.
type fakeAccounts struct {
	mu      sync.Mutex
	clients []string
}

func (a *fakeAccounts) CreateLogin(context.Context, http.Role, string, string, string) error {
	return nil
}

func (a *fakeAccounts) CreateStaffClient(_ context.Context, restaurantID, name string) (string, string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := len(a.clients) + 1
	id := fmt.Sprintf("rs_%d", n)
	a.clients = append(a.clients, id)
	return id, fmt.Sprintf("secret-%d-of-%s-%s", n, restaurantID, name), nil
}

func (a *fakeAccounts) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.clients)
}

// TestStaffClientIdempotency: POST /v1/restaurants/{id}/staff-clients honours Idempotency-Key. A retry gets the
// same client and secret (never a second client); the stored answer is sealed, so the journal does not hold the
// secret; another body with the key is 422; the replay is not cacheable either.
func TestStaffClientIdempotency(t *testing.T) {
	accounts := &fakeAccounts{}
	h := newHarness(t, func(_ *harness, _ *http.Config, b *http.Backend) { b.Accounts = accounts })
	var rest struct{ ID string }
	if res := h.do(t, "POST", "/v1/restaurants", ctJSON, []byte(validRestaurant), as(operator)...); res.status != 201 || json.Unmarshal(res.body, &rest) != nil {
		t.Fatalf("restaurant: %d %s", res.status, res.body)
	}
	path := "/v1/restaurants/" + rest.ID + "/staff-clients"
	create := func(key, body string) response {
		t.Helper()
		return h.do(t, "POST", path, ctJSON, []byte(body), append(as(operator), "Idempotency-Key", key)...)
	}
	first := create("sc-1", `{"name":"front desk"}`)
	var sc struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	if first.status != 201 || json.Unmarshal(first.body, &sc) != nil || sc.ClientSecret == "" {
		t.Fatalf("first: %d %s", first.status, first.body)
	}
	if stored := idempotencyRecords(t, h.journal); bytes.Contains(stored, []byte(sc.ClientSecret)) {
		t.Fatal("the idempotency record holds the client secret in the clear")
	}
	again := create("sc-1", `{"name":"front desk"}`)
	if again.status != 201 || !bytes.Equal(again.body, first.body) || again.header.Get("Idempotent-Replayed") != "true" ||
		again.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("retry: %d %v %s, want the replay of %s", again.status, again.header, again.body, first.body)
	}
	if n := accounts.count(); n != 1 {
		t.Fatalf("%d clients for one key, want 1", n)
	}
	wantProblem(t, create("sc-1", `{"name":"back office"}`), 422, http.CodeIdempotencyKeyReused)
	// The same key of another operator is another request, and cannot open the first one's answer.
	other := h.do(t, "POST", path, ctJSON, []byte(`{"name":"front desk"}`), append(as("operator:op_2"), "Idempotency-Key", "sc-1")...)
	if other.status != 201 || bytes.Equal(other.body, first.body) || accounts.count() != 2 {
		t.Fatalf("another operator's key: %d %s (%d clients)", other.status, other.body, accounts.count())
	}
}
