package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/platterhq/platter/node/sim"
)

// `platter sim`: the marketplace simulator (package node/sim) against running nodes. It prints a progress line a
// second on a terminal, then the report; --json also writes the report as JSON. It fails (exit status 2) when the
// population cannot be created or an invariant was broken.

// simFlags parses the flags of `platter sim` into a simulator configuration; jsonPath and progress are the
// command line's own.
func simFlags(args []string, usage io.Writer) (cfg sim.Config, jsonPath, progress string, err error) {
	cfg = sim.DefaultConfig()
	cfg.SpreadLogins = true
	fs := flag.NewFlagSet("platter sim", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	targets := "https://127.0.0.1:8080"
	creds := "./data/operator-credentials.json"
	center := fmt.Sprintf("%g,%g", cfg.Center.Lat, cfg.Center.Lng)
	fs.StringVar(&targets, "target", targets, "comma-separated base URLs of the edges to drive (parties are spread over them)")
	fs.StringVar(&creds, "operator-credentials", creds, "the operator client's credentials: operator-credentials.json in a node's data dir")
	fs.BoolVar(&cfg.InsecureSkipVerify, "insecure-skip-verify", false, "accept any certificate (a node's self-signed development certificate)")
	fs.IntVar(&cfg.Restaurants, "restaurants", cfg.Restaurants, "restaurants to create")
	fs.IntVar(&cfg.Dashers, "dashers", cfg.Dashers, "dashers to create")
	fs.IntVar(&cfg.Customers, "customers", cfg.Customers, "customers to sign up (each orders at most once per --customer-gap)")
	fs.IntVar(&cfg.DasherCapacity, "dasher-capacity", cfg.DasherCapacity, "orders a dasher carries at once (1-10)")
	fs.Float64Var(&cfg.Rate, "rate", cfg.Rate, "target order arrivals per second (open loop)")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long arrivals are scheduled")
	fs.BoolVar(&cfg.Poisson, "poisson", cfg.Poisson, "Poisson arrivals (exponential gaps) instead of evenly spaced ones")
	fs.Float64Var(&cfg.RejectShare, "reject-share", cfg.RejectShare, "share of orders restaurants reject")
	fs.Float64Var(&cfg.CancelShare, "cancel-share", cfg.CancelShare, "share of orders customers cancel")
	fs.Float64Var(&cfg.DeclineShare, "decline-share", cfg.DeclineShare, "share of offers dashers decline")
	fs.DurationVar(&cfg.PrepTime, "prep-time", cfg.PrepTime, "kitchen time from acceptance to ready (±50%)")
	fs.DurationVar(&cfg.TravelTime, "travel-time", cfg.TravelTime, "ride from pickup to the customer (±50%)")
	fs.DurationVar(&cfg.MoveEvery, "move-every", cfg.MoveEvery, "how often an idle dasher moves to a neighbouring cell")
	fs.DurationVar(&cfg.CustomerGap, "customer-gap", cfg.CustomerGap, "least time between two orders of one customer (the edge's per-customer order limit)")
	fs.DurationVar(&cfg.PollWait, "poll-wait", cfg.PollWait, "wait of each feed long poll (at most 30s)")
	fs.DurationVar(&cfg.Drain, "drain", cfg.Drain, "after the last arrival, how long to wait for orders in flight")
	fs.StringVar(&center, "center", center, "lat,lng of the simulated city's centre")
	fs.IntVar(&cfg.GridRadius, "grid-radius", cfg.GridRadius, "rings of H3 cells (resolution 8) around the centre")
	fs.IntVar(&cfg.SetupConcurrency, "setup-concurrency", cfg.SetupConcurrency, "calls in flight while creating the population")
	fs.BoolVar(&cfg.SpreadLogins, "spread-logins", cfg.SpreadLogins, "spread sign-ups and sign-ins over 127.77.x.y source addresses (loopback targets only; the edge limits them per address)")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of the simulation's choices")
	fs.StringVar(&jsonPath, "json", "", "also write the report as JSON to this file")
	fs.StringVar(&progress, "progress", "auto", "progress lines: auto (on a terminal), on, off")
	fs.BoolVar(&cfg.NoAuth, "no-auth", false, "send no tokens (a node without an authorization server: no order can be placed)")

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(usage, "Usage: platter sim [flags]\n\nDrives running nodes through the HTTP API as restaurants, dashers and customers would, and reports\nthroughput, latency per API step, errors by code and an invariant check.\n\nFlags:\n")
			fs.SetOutput(usage)
			fs.PrintDefaults()
			return cfg, "", "", errUsage
		}
		return cfg, "", "", err
	}
	if fs.NArg() > 0 {
		return cfg, "", "", fmt.Errorf("unexpected argument %q (flags are --name=value)", fs.Arg(0))
	}
	for _, t := range strings.Split(targets, ",") {
		if t = strings.TrimRight(strings.TrimSpace(t), "/"); t != "" {
			cfg.Targets = append(cfg.Targets, t)
		}
	}
	lat, lng, ok := strings.Cut(center, ",")
	if cfg.Center.Lat, err = strconv.ParseFloat(strings.TrimSpace(lat), 64); err != nil || !ok {
		return cfg, "", "", fmt.Errorf("invalid --center %q: want lat,lng", center)
	}
	if cfg.Center.Lng, err = strconv.ParseFloat(strings.TrimSpace(lng), 64); err != nil {
		return cfg, "", "", fmt.Errorf("invalid --center %q: want lat,lng", center)
	}
	if progress != "auto" && progress != "on" && progress != "off" {
		return cfg, "", "", fmt.Errorf("invalid --progress %q: want auto, on or off", progress)
	}
	if !cfg.NoAuth {
		b, err := os.ReadFile(creds)
		if err != nil {
			return cfg, "", "", fmt.Errorf("--operator-credentials: %w (a node writes operator-credentials.json in its data dir on first start)", err)
		}
		var c struct {
			ClientID     string `json:"client_id"`
			ClientSecret string `json:"client_secret"`
		}
		if err := json.Unmarshal(b, &c); err != nil || c.ClientID == "" || c.ClientSecret == "" {
			return cfg, "", "", fmt.Errorf("--operator-credentials %s: want {\"client_id\": ..., \"client_secret\": ...}", creds)
		}
		cfg.OperatorID, cfg.OperatorSecret = c.ClientID, c.ClientSecret
	}
	return cfg, jsonPath, progress, cfg.Validate()
}

// runSim is `platter sim`: parse, run until the report (or the first SIGINT), print it. It returns an error when
// the simulation could not run or broke an invariant.
func runSim(args []string, stdout io.Writer, isTTY func(io.Writer) bool) error {
	cfg, jsonPath, progress, err := simFlags(args, stdout)
	if err != nil {
		return err
	}
	if progress == "on" || (progress == "auto" && isTTY != nil && isTTY(stdout)) {
		cfg.Progress = stdout
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := sim.New(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "platter sim: creating %d restaurants, %d dashers and %d customers on %s\n",
		cfg.Restaurants, cfg.Dashers, cfg.Customers, strings.Join(cfg.Targets, ", "))
	ctx, cancel := signalContext()
	defer cancel()
	report, err := s.Run(ctx)
	if err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	report.WriteText(stdout)
	if jsonPath != "" {
		f, err := os.Create(jsonPath)
		if err != nil {
			return fmt.Errorf("sim: write the report: %w", err)
		}
		err = errors.Join(report.WriteJSON(f), f.Close())
		if err != nil {
			return fmt.Errorf("sim: write the report: %w", err)
		}
	}
	if n := len(report.Invariants.Violations); n > 0 {
		return fmt.Errorf("sim: %d invariant violations (listed in the report)", n)
	}
	return nil
}
