package oauth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/alexedwards/argon2id"
	"github.com/google/uuid"
	"github.com/ory/fosite"

	"github.com/platterhq/platter/actors"
	"github.com/platterhq/platter/http"
	"github.com/platterhq/platter/messages"
)

// Accounts: sign-ins of customers and dashers (argon2id), confidential clients of operators and restaurant staff
// (random secrets, SHA-256), and the operator bootstrap.

// CreateLogin keeps the sign-in of a customer or dasher: the password's argon2id hash, in the Account actor of
// the email. A retried sign-up of the same subject succeeds again; another subject with the email gets 409
// ALREADY_EXISTS. It implements http.Accounts.
func (s *Server) CreateLogin(ctx context.Context, role http.Role, subject, email, password string) error {
	if role != http.RoleCustomer && role != http.RoleDasher {
		return fmt.Errorf("create login: role %q cannot sign in with a password", role)
	}
	hash, err := argon2id.CreateHash(password, s.cfg.Argon2)
	if err != nil {
		return fmt.Errorf("hash password: %w", err)
	}
	_, err = s.store.call(ctx, actors.LoginIdentity(email), "CreateLogin", &messages.CreateLogin{
		CommandId: "create-login:" + subject, Role: string(role), Subject: subject, Email: email, PasswordHash: hash,
	})
	if isCode(err, http.CodeIdempotencyKeyReused) {
		// The same subject with another password hash (a retried sign-up hashes again): the login exists for it.
		return nil
	}
	return err
}

// Credentials are a confidential client's id and secret, as operator-credentials.json holds them.
type Credentials struct {
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
}

// newSecret returns 256 random bits, base64url.
func newSecret() (string, []byte, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", nil, fmt.Errorf("make client secret: %w", err)
	}
	secret := base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(secret))
	return secret, sum[:], nil
}

// CreateStaffClient creates a client_credentials client bound to a restaurant and answers its credentials (the
// secret is shown only here). It implements http.Accounts.
func (s *Server) CreateStaffClient(ctx context.Context, restaurantID, name string) (clientID, clientSecret string, err error) {
	secret, sum, err := newSecret()
	if err != nil {
		return "", "", err
	}
	id := "rs_" + uuid.NewString()
	_, err = s.store.call(ctx, actors.AccountClientPrefix+id, "CreateClient", &messages.CreateClient{
		CommandId: "create-client:" + id, Role: actors.RoleRestaurant, Restaurants: []string{restaurantID}, SecretSha256: sum, Name: name,
	})
	if err != nil {
		return "", "", err
	}
	s.log.Info("restaurant staff client created", slog.String("client_id", id), slog.String("restaurant_id", restaurantID))
	return id, secret, nil
}

// OperatorClientID is the client id of the bootstrap operator client.
const OperatorClientID = "platter-operator"

// OperatorCredentialsFile is the file, in the data directory, that receives the bootstrap operator credentials.
const OperatorCredentialsFile = "operator-credentials.json"

// Bootstrap creates the operator client when the cluster has none and writes its credentials to
// dataDir/operator-credentials.json (mode 0600, never overwritten). It reports whether it created the client.
// When the client exists (another node, or an earlier start, made it) it does nothing: the secret is nowhere but in
// the file the creating node wrote.
func (s *Server) Bootstrap(ctx context.Context, dataDir string) (bool, error) {
	path := filepath.Join(dataDir, OperatorCredentialsFile)
	if _, err := os.Stat(path); err == nil {
		return false, nil
	}
	_, err := s.store.GetClient(ctx, OperatorClientID)
	if err == nil {
		return false, nil
	}
	if !errors.Is(err, fosite.ErrNotFound) {
		return false, fmt.Errorf("look up the operator client: %w", err)
	}
	secret, sum, err := newSecret()
	if err != nil {
		return false, err
	}
	// Write the file first (exclusively): a secret the cluster keeps but nobody has would lock operators out.
	b, _ := json.MarshalIndent(Credentials{ClientID: OperatorClientID, ClientSecret: secret}, "", "  ")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		os.Remove(path)
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := errors.Join(f.Sync(), f.Close()); err != nil {
		os.Remove(path)
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	_, err = s.store.call(ctx, actors.AccountClientPrefix+OperatorClientID, "CreateClient", &messages.CreateClient{
		CommandId: "bootstrap-operator", Role: actors.RoleOperator, SecretSha256: sum, Name: "bootstrap operator",
	})
	if err != nil {
		os.Remove(path) // another node won the race (ALREADY_EXISTS, IDEMPOTENCY_KEY_REUSED), or the call failed
		if isCode(err, http.CodeAlreadyExists) || isCode(err, http.CodeIdempotencyKeyReused) {
			return false, nil
		}
		return false, fmt.Errorf("create the operator client: %w", err)
	}
	s.log.Info("operator client created", slog.String("client_id", OperatorClientID), slog.String("file", path))
	return true, nil
}

var (
	_ http.Accounts       = (*Server)(nil)
	_ http.Authenticator  = (*Server)(nil)
	_ http.OAuthEndpoints = (*Server)(nil)
)
