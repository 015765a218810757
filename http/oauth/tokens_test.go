package oauth

import (
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/platterhq/platter/messages"
)

// TestSetRevokedMerges: installs of the revocation list merge. A re-read of the keys that started before a
// revocation installs its older list after the revoking node's own install: the revoked family stays refused.
// An entry past its until is dropped, an id in both lists keeps the later until, and concurrent installs lose
// nothing.
func TestSetRevokedMerges(t *testing.T) {
	now := time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC)
	rev := func(id string, until time.Time) *messages.Revocation {
		return &messages.Revocation{Id: id, Until: timestamppb.New(until)}
	}
	family := func(fid string) *accessClaims {
		return &accessClaims{Claims: jwt.Claims{ID: "jti-" + fid}, FamilyID: fid}
	}
	k := &keyring{}
	// The revoking node installs the list RevokeTokens answered (fam-new just revoked); a re-read that started
	// before the revocation then installs the list it read, without fam-new.
	k.setRevoked([]*messages.Revocation{rev("fam-old", now.Add(time.Minute)), rev("fam-new", now.Add(time.Hour))}, now)
	stale := []*messages.Revocation{rev("fam-old", now.Add(time.Minute))}
	k.setRevoked(stale, now)
	for _, fid := range []string{"fam-old", "fam-new"} {
		if !k.isRevoked(family(fid)) {
			t.Errorf("%s accepted after the stale re-read installed", fid)
		}
	}
	if k.isRevoked(family("fam-other")) {
		t.Error("a family never revoked is refused")
	}
	// Two minutes on: fam-old's entry is past its until and goes; fam-new keeps its later until.
	later := now.Add(2 * time.Minute)
	k.setRevoked([]*messages.Revocation{rev("fam-new", now.Add(time.Minute))}, later)
	if got := *k.revoked.Load(); len(got) != 1 || !got["fam-new"].Equal(now.Add(time.Hour)) {
		t.Errorf("list after expiry: %v, want only fam-new until %v", got, now.Add(time.Hour))
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			k.setRevoked([]*messages.Revocation{rev("fam-"+string(rune('a'+i)), now.Add(time.Hour))}, later)
		})
	}
	wg.Wait()
	if got := len(*k.revoked.Load()); got != 9 {
		t.Errorf("%d entries after 8 concurrent installs, want 9", got)
	}
}
