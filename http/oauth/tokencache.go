package oauth

import (
	"crypto/sha256"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/platterhq/platter/http"
)

// tokenCache remembers the access tokens verify accepted, so that a client's token costs one signature check
// rather than one per request (go-jose's parse and EdDSA verify were an eighth of a node's CPU under load).
//
// Only accepted tokens enter it, keyed by the SHA-256 of the exact token: a refused token has no entry, and no
// entry answers for another token. An entry is an answer of verify that can change only with time and with the
// keyring, so a hit re-checks them (tokenIssuer.stillValid): the time claims (exp, nbf, iat, with ClockSkew,
// exactly as verify does), that the kid is still published with the same public key, and that the token's family
// is not on the revocation list (RFC 7009; one map lookup). The other checks of verify (iss, aud, lifetime, sub,
// client_id, scope, role) depend only on the token's bytes. Nothing else can make a verified token invalid: no
// account can be disabled.
//
// It holds at most max entries and drops the least recently used when full; an entry found expired or with an
// unpublished key or revoked on a hit is dropped then. Safe for concurrent use.
type tokenCache struct {
	max int

	mu         sync.Mutex
	entries    map[[sha256.Size]byte]*cachedToken
	head, tail *cachedToken // most recently used first

	hits, misses atomic.Uint64
}

// cachedToken is a token verify accepted.
type cachedToken struct {
	key        [sha256.Size]byte
	verified   // its claims and the key that verified it
	principal  http.Principal
	prev, next *cachedToken
}

func newTokenCache(max int) *tokenCache {
	return &tokenCache{max: max, entries: make(map[[sha256.Size]byte]*cachedToken, min(max, 1024))}
}

// get returns the entry of key, marking it most recently used.
func (c *tokenCache) get(key [sha256.Size]byte) (*cachedToken, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok {
		c.misses.Add(1)
		return nil, false
	}
	c.hits.Add(1)
	c.unlink(e)
	c.pushFront(e)
	return e, true
}

// put adds e (replacing an entry of the same key), dropping the least recently used entry when full.
func (c *tokenCache) put(e *cachedToken) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.entries[e.key]; ok {
		c.unlink(old)
		delete(c.entries, old.key)
	}
	for len(c.entries) >= c.max && c.tail != nil {
		lru := c.tail
		c.unlink(lru)
		delete(c.entries, lru.key)
	}
	c.entries[e.key] = e
	c.pushFront(e)
}

// remove drops e if it is still the entry of its key.
func (c *tokenCache) remove(e *cachedToken) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries[e.key] == e {
		c.unlink(e)
		delete(c.entries, e.key)
	}
}

func (c *tokenCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

func (c *tokenCache) unlink(e *cachedToken) {
	if e.prev != nil {
		e.prev.next = e.next
	} else if c.head == e {
		c.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else if c.tail == e {
		c.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

func (c *tokenCache) pushFront(e *cachedToken) {
	e.next = c.head
	if c.head != nil {
		c.head.prev = e
	}
	c.head = e
	if c.tail == nil {
		c.tail = e
	}
}

// clonePrincipal copies p, so that each request gets its own Restaurants.
func clonePrincipal(p http.Principal) http.Principal {
	p.Restaurants = slices.Clone(p.Restaurants)
	return p
}
