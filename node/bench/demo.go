package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// runDemo is `make demo`: one node in a fresh temporary data directory (its lines printed as they come), then
// `platter sim` against it at a gentle rate for 30 s, with slow kitchens and rides so that each order's way from
// placed to delivered can be followed in the progress lines. The node stops (and its data directory goes) at the end.
func runDemo(platter string) error {
	fmt.Println("starting a node in a fresh temporary data directory ...")
	n, err := startPlatter(platter, os.Stdout)
	if err != nil {
		return err
	}
	defer n.stop()
	args := []string{"sim", "--target", n.url, "--operator-credentials", n.creds, "--insecure-skip-verify",
		"--restaurants", "12", "--dashers", "16", "--customers", "25", "--grid-radius", "1",
		"--rate", "3", "--duration", "30s", "--prep-time", "1500ms", "--travel-time", "1500ms", "--drain", "15s", "--progress", "on"}
	fmt.Printf("\n$ %s %s\n\n", platter, strings.Join(args, " "))
	cmd := exec.Command(platter, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("platter sim: %w (the node's log: %s)", err, n.logFile.Name())
	}
	fmt.Println("\nThat was one node and the simulator; `platter sim -h` lists the knobs, `make bench` measures.")
	return nil
}
