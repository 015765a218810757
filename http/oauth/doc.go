// Package oauth is Platter's OAuth 2.0 authorization server and the resource side's token check. It is built on
// github.com/ory/fosite (the grants, PKCE, client authentication, refresh rotation with reuse detection, RFC 7009),
// bridged to the fasthttp edge with fasthttpadaptor, and keeps every credential in the Account actors
// (actors/account.go): one actor per login, client, token family and the signing keys, so that any node of a
// cluster serves any request.
//
// # Using it
//
//	o, err := oauth.NewServer(oauth.DefaultConfig(), backend.Actors)
//	backend.Auth, backend.Accounts, backend.OAuth = o, o, o   // the edge's Authenticator, Accounts, endpoints
//	err = o.Start(ctx)                                      // signing keys (the first node makes one)
//	created, err := o.Bootstrap(ctx, dataDir)               // operator client, once per cluster
//
// # Grants (RFC 6749, RFC 9700)
//
//   - client_credentials for confidential clients: the bootstrap operator client ("platter-operator", whose secret
//     the creating node writes to data-dir/operator-credentials.json, mode 0600) and restaurant staff clients
//     (POST /v1/restaurants/{id}/staff-clients). Secrets are 256 random bits; the store keeps their SHA-256.
//   - authorization_code with PKCE (S256 only; plain and missing challenges are refused) for the public client
//     "platter-app", whose redirect URIs are platter://callback and http loopback IP literals on any port and path
//     (RFC 8252 section 7.3). GET /oauth2/authorize shows the sign-in form; POST checks email and password (argon2id,
//     throttled per account in its actor and per client address on this node) and answers 302 with code and state.
//   - refresh_token, rotated on every use. Codes and refresh tokens are opaque ("<family>.<random>"); the store
//     keeps only their SHA-256, in the actor of their family (fosite's request id, kept across refreshes). A
//     refresh token used twice, or a code exchanged twice, revokes the whole family, atomically in that actor.
//   - No implicit grant and no password grant are composed.
//   - POST /oauth2/revoke (RFC 7009), token_type_hint refresh_token, access_token or none: a refresh token, or an
//     access token of the code grant, revokes its family (its refresh tokens and every access token it was issued);
//     a client_credentials access token is revoked alone. Only the client a token was issued to can revoke it
//     (another client is answered 200 and the token stays valid, as fosite does); an unknown, expired or invalid
//     token is answered 200.
//
// # Access tokens (RFC 9068)
//
// JWTs signed with Ed25519 (alg EdDSA, typ at+jwt, kid), at most 15 minutes (Config.AccessTokenTTL), with iss, aud,
// sub (customer or dasher id, or client id), client_id, iat, nbf, exp, jti, fid (the token family, see below), scope
// ("platter"), role (customer, dasher, restaurant, operator) and, for restaurant staff, restaurants. Authenticate (http.Authenticator) pins
// EdDSA, requires typ at+jwt, a published kid and every claim above, with Config.ClockSkew leeway; every failure is
// 401 UNAUTHENTICATED with WWW-Authenticate. A token that passed is remembered (Config.TokenCacheSize tokens,
// least recently used dropped first, keyed by its SHA-256) so that its signature is checked once; each later use
// re-checks what can change before exp (the time claims, and that its kid is still published with the same key),
// so the cache answers exactly as a full check would. Signing keys live in the Account actor "keys"; GET
// /.well-known/jwks.json publishes the current key and retired keys until their tokens have expired. A node
// re-reads them every Config.KeyRefresh (at once when a token names an unknown kid) and rotates when the current
// key is older than Config.KeyRotateAfter (platter run --key-rotate-after). An operator rotates at once with POST
// /v1/admin/signing-keys/rotate (RotateSigningKey, http.SigningKeyRotator); with {"retire_previous": true} it
// also revokes every previous key for a compromised one: the Account actor marks them retired at the Unix epoch,
// so that this node refuses their tokens at once (cached ones included: a cache hit re-checks that the kid is
// published) and every other node once it re-reads the keys, within KeyRefresh. Keys persist in the journal, so a
// restart keeps the kids and the tokens they signed.
//
// # Revoked access tokens
//
// Access tokens are not stored, so a revocation names them by their "fid" claim (fosite's request id: the token
// family of a code grant, kept across refreshes, or the one token request of client_credentials; a token issued
// without fid is named by its jti). Revoking an access or refresh token, and a refresh token or code presented
// twice, add the fid to the revocation list of the Account actor "keys" (RevokeTokens), which keeps each entry
// until AccessTokenTTL + 2 ClockSkew after the revocation, when every token it covers has expired, and drops
// expired entries at its next write, so the list holds at most one token lifetime's revocations. GetSigningKeys
// answers the list with the keys: the revoking node installs it at once, every other node when it re-reads the
// keys (Config.KeyRefresh, as for a revoked key). Authenticate refuses a token on the list with 401, a cached one
// included (a cache hit re-checks the list): one atomic load and one map lookup per request.
package oauth
