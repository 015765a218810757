package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/platterhq/platter/http/oauth"
)

// startAuth readies the authorization server once the node serves actors: the signing keys (the first node of a
// cluster makes one) and, when the cluster has no operator client yet, the bootstrap operator credentials, written
// once to the data directory (mode 0600).
func (m *Main) startAuth(ctx context.Context, auth *oauth.Server) error {
	ctx, cancel := context.WithTimeout(ctx, m.Config.JoinTimeout)
	defer cancel()
	if err := auth.Start(ctx); err != nil {
		return fmt.Errorf("start the authorization server: %w", err)
	}
	created, err := auth.Bootstrap(ctx, m.Config.DataDir)
	if err != nil {
		return fmt.Errorf("bootstrap the operator client: %w", err)
	}
	if created {
		path := filepath.Join(m.Config.DataDir, oauth.OperatorCredentialsFile)
		m.Logger.Info("operator credentials written", slog.String("path", path))
		fmt.Fprintf(m.Stdout, "platter: operator client credentials written to %s (mode 0600; keep them secret)\n", path)
	}
	return nil
}
