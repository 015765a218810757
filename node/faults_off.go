//go:build !platterfaults

package main

import "github.com/platterhq/platter/cluster"

// faults returns nil: fault injection exists only in binaries built with -tags platterfaults (system tests; see
// faults_on.go).
func (m *Main) faults() *cluster.Faults { return nil }
