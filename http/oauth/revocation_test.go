package oauth_test

import (
	"context"
	"encoding/json"
	"io"
	nethttp "net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/platterhq/platter/actors/journal/pgtest"
	"github.com/platterhq/platter/http/oauth"
)

// RFC 7009 revocation of access tokens end to end: a revoked access token, and every access token of a revoked
// token family (revocation of a refresh token, refresh token reuse), is refused with 401 at once on the node that
// revoked and, within KeyRefresh, on every other node.

// revokeToken posts an RFC 7009 revocation as client id (with its secret in HTTP Basic when it has one) and
// returns the status and body.
func (n *testNode) revokeToken(t *testing.T, token, hint, id, secret string) (int, string) {
	t.Helper()
	form := url.Values{"token": {token}}
	if hint != "" {
		form.Set("token_type_hint", hint)
	}
	if secret == "" {
		form.Set("client_id", id)
	}
	req, err := nethttp.NewRequest("POST", n.url+"/oauth2/revoke", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if secret != "" {
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	}
	res, err := plain.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// status is the answer of GET path with token.
func (n *testNode) status(t *testing.T, token, path string) int {
	t.Helper()
	status, _ := n.do(t, token, "GET", path, "")
	return status
}

type staffClient struct {
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	Restaurant   string `json:"-"`
}

// staffClient creates a restaurant and a staff client of it with the operator token op.
func (n *testNode) staffClient(t *testing.T, op string) staffClient {
	t.Helper()
	var r struct{ ID string }
	status, b := n.do(t, op, "POST", "/v1/restaurants", `{"name":"Thai Basil","position":{"lat":37.77,"lng":-122.41},"cuisine":"thai"}`)
	if status != 201 || json.Unmarshal(b, &r) != nil {
		t.Fatalf("create restaurant: %d %s", status, b)
	}
	var sc staffClient
	status, b = n.do(t, op, "POST", "/v1/restaurants/"+r.ID+"/staff-clients", `{"name":"front desk"}`)
	if status != 201 || json.Unmarshal(b, &sc) != nil || sc.ClientSecret == "" {
		t.Fatalf("staff client: %d %s", status, b)
	}
	sc.Restaurant = r.ID
	return sc
}

// waitFor polls cond every `every` until it holds, failing the test after total.
func waitFor(t *testing.T, total, every time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(total)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", total, what)
		}
		time.Sleep(every)
	}
}

func refresh(conf *oauth2.Config, rt string) (*oauth2.Token, error) {
	return conf.TokenSource(context.Background(), &oauth2.Token{RefreshToken: rt}).Token()
}

func TestRevokeAccessToken(t *testing.T) {
	n := startNode(t, oauth.Config{})
	n.signUp(t, "ann@example.com", "correct horse")
	conf := appConfig(n, "http://127.0.0.1:53123/callback")

	for _, hint := range []string{"access_token", ""} {
		t.Run("hint="+hint, func(t *testing.T) {
			tok := codeFlow(t, n, conf, "ann@example.com", "correct horse")
			tok1, err := refresh(conf, tok.RefreshToken) // a second access token of the same family
			if err != nil {
				t.Fatal(err)
			}
			other := codeFlow(t, n, conf, "ann@example.com", "correct horse") // another family
			for _, a := range []string{tok.AccessToken, tok1.AccessToken, other.AccessToken} {
				if s := n.status(t, a, "/v1/customers/me"); s != 200 { // and cached
					t.Fatalf("before the revocation: %d", s)
				}
			}
			if s, b := n.revokeToken(t, tok.AccessToken, hint, oauth.AppClientID, ""); s != 200 {
				t.Fatalf("revoke: %d %s", s, b)
			}
			if s := n.status(t, tok.AccessToken, "/v1/customers/me"); s != 401 {
				t.Fatalf("the revoked access token: %d, want 401", s)
			}
			if s := n.status(t, tok1.AccessToken, "/v1/customers/me"); s != 401 {
				t.Fatalf("the revoked token's family's other access token: %d, want 401", s)
			}
			if _, err := refresh(conf, tok1.RefreshToken); err == nil {
				t.Fatal("the revoked access token's family still refreshes")
			}
			if s := n.status(t, other.AccessToken, "/v1/customers/me"); s != 200 {
				t.Fatalf("another family's access token: %d, want 200", s)
			}
			if s, b := n.revokeToken(t, tok.AccessToken, hint, oauth.AppClientID, ""); s != 200 {
				t.Fatalf("revoking again: %d %s", s, b)
			}
		})
	}

	t.Run("client_credentials", func(t *testing.T) {
		op1, op2 := n.operatorToken(t), n.operatorToken(t)
		staff := n.staffClient(t, op1)
		staffTok := n.clientToken(t, staff.ClientID, staff.ClientSecret).AccessToken
		for _, a := range []string{op1, op2} {
			if s := n.status(t, a, "/v1/admin/cluster"); s != 200 {
				t.Fatalf("before the revocation: %d", s)
			}
		}
		// RFC 7009 section 2.1: only the client the token was issued to may revoke it (fosite answers the other
		// client 200 all the same, telling it nothing about the token).
		n.revokeToken(t, op1, "access_token", staff.ClientID, staff.ClientSecret)
		if s := n.status(t, op1, "/v1/admin/cluster"); s != 200 {
			t.Fatalf("after another client's attempt: %d, want 200", s)
		}
		if s, b := n.revokeToken(t, op1, "access_token", n.opCreds.ClientID, n.opCreds.ClientSecret); s != 200 {
			t.Fatalf("revoke: %d %s", s, b)
		}
		if s := n.status(t, op1, "/v1/admin/cluster"); s != 401 {
			t.Fatalf("the revoked operator token: %d, want 401", s)
		}
		// Each client_credentials token is its own grant: the client's other tokens stay valid.
		if s := n.status(t, op2, "/v1/admin/cluster"); s != 200 {
			t.Fatalf("the operator's other token: %d, want 200", s)
		}
		if s := n.status(t, staffTok, "/v1/restaurants/"+staff.Restaurant); s == 401 {
			t.Fatalf("the staff token: %d", s)
		}
	})
}

// TestRefreshReuseRevokesAccessTokens: presenting a rotated refresh token again revokes the family (RFC 9700
// section 4.14.2), its access tokens included, cached ones too.
func TestRefreshReuseRevokesAccessTokens(t *testing.T) {
	n := startNode(t, oauth.Config{})
	n.signUp(t, "ann@example.com", "correct horse")
	conf := appConfig(n, "platter://callback")
	tok := codeFlow(t, n, conf, "ann@example.com", "correct horse")
	tok1, err := refresh(conf, tok.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	other := codeFlow(t, n, conf, "ann@example.com", "correct horse")
	for _, a := range []string{tok.AccessToken, tok1.AccessToken, other.AccessToken} {
		if s := n.status(t, a, "/v1/customers/me"); s != 200 {
			t.Fatalf("before the reuse: %d", s)
		}
	}
	if _, err := refresh(conf, tok.RefreshToken); err == nil || !strings.Contains(err.Error(), "invalid_grant") {
		t.Fatalf("reuse: %v, want invalid_grant", err)
	}
	for i, a := range []string{tok.AccessToken, tok1.AccessToken} {
		if s := n.status(t, a, "/v1/customers/me"); s != 401 {
			t.Fatalf("access token %d of the reused family: %d, want 401", i, s)
		}
	}
	if s := n.status(t, other.AccessToken, "/v1/customers/me"); s != 200 {
		t.Fatalf("another family's access token: %d, want 200", s)
	}

	// Revoking a refresh token (RFC 7009) ends its family's access tokens too.
	tok3 := codeFlow(t, n, conf, "ann@example.com", "correct horse")
	if s := n.status(t, tok3.AccessToken, "/v1/customers/me"); s != 200 {
		t.Fatalf("before the revocation: %d", s)
	}
	if s, b := n.revokeToken(t, tok3.RefreshToken, "refresh_token", oauth.AppClientID, ""); s != 200 {
		t.Fatalf("revoke: %d %s", s, b)
	}
	if s := n.status(t, tok3.AccessToken, "/v1/customers/me"); s != 401 {
		t.Fatalf("the access token of a revoked refresh token: %d, want 401", s)
	}
}

// TestRevocationReachesOtherNodes: two nodes on a shared PostgreSQL journal. A family revoked through node A is
// refused by A at once and by B, which had verified (and cached) its access token, once B re-reads the keys and
// revocations (KeyRefresh), with no request to B in between but the polling one.
func TestRevocationReachesOtherNodes(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	cfg := oauth.Config{KeyRefresh: 2 * time.Second}
	a := startNodeWith(t, cfg, nodeOptions{dsn: dsn})
	b := startNodeWith(t, cfg, nodeOptions{dsn: dsn, seed: a})
	a.signUp(t, "ann@example.com", "correct horse")
	conf := appConfig(a, "platter://callback")
	tok := codeFlow(t, a, conf, "ann@example.com", "correct horse")
	op := a.operatorToken(t)
	for _, n := range []*testNode{a, b} {
		if s := n.status(t, tok.AccessToken, "/v1/customers/me"); s != 200 {
			t.Fatalf("%s before the revocation: %d", n.url, s)
		}
		if s := n.status(t, op, "/v1/admin/cluster"); s != 200 {
			t.Fatalf("%s operator before the revocation: %d", n.url, s)
		}
	}

	if s, body := a.revokeToken(t, tok.AccessToken, "access_token", oauth.AppClientID, ""); s != 200 {
		t.Fatalf("revoke on A: %d %s", s, body)
	}
	if s, body := a.revokeToken(t, op, "", a.opCreds.ClientID, a.opCreds.ClientSecret); s != 200 {
		t.Fatalf("revoke the operator token on A: %d %s", s, body)
	}
	revoked := time.Now()
	if s := a.status(t, tok.AccessToken, "/v1/customers/me"); s != 401 {
		t.Fatalf("node A right after the revocation: %d, want 401", s)
	}
	waitFor(t, 30*time.Second, 50*time.Millisecond, "node B to refuse the revoked access token", func() bool {
		return b.status(t, tok.AccessToken, "/v1/customers/me") == 401
	})
	t.Logf("node B refused the revoked token %v after the revocation on node A (KeyRefresh %v)",
		time.Since(revoked).Round(time.Millisecond), cfg.KeyRefresh)
	if s := b.status(t, op, "/v1/admin/cluster"); s != 401 {
		t.Fatalf("node B, the revoked operator token: %d, want 401", s)
	}
	if s := b.status(t, b.operatorToken(t), "/v1/admin/cluster"); s != 200 {
		t.Fatalf("node B, a new operator token: %d, want 200", s)
	}
}
