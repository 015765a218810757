package cluster

import (
	"fmt"
	"log/slog"
	"slices"
)

// nodeState is the lifecycle state of a Node.
type nodeState int

const (
	stateNew      nodeState = iota // created, not started
	stateJoining                   // Start: transports bound, joining seeds, waiting for the first topology
	stateServing                   // serving identities (Ready, if the incarnation is serving)
	stateDraining                  // Drain: owns nothing, hands its activations over; requests still routed
	stateFencing                   // declared dead: old incarnation torn down, rejoining under a fresh id
	stateStopping                  // Stop in progress
	stateStopped                   // stopped, or Start failed (terminal)
	stateKilled                    // Kill (terminal)
)

var stateNames = [...]string{"new", "joining", "serving", "draining", "fencing", "stopping", "stopped", "killed"}

func (s nodeState) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// transitions is the table of legal state changes; anything else is refused. Kill may happen in any state but
// the terminal ones and is applied directly by Node.Kill.
var transitions = map[nodeState][]nodeState{
	stateNew:      {stateJoining, stateStopped},
	stateJoining:  {stateServing, stateStopping, stateStopped},
	stateServing:  {stateDraining, stateFencing, stateStopping},
	stateDraining: {stateStopping},
	stateFencing:  {stateServing, stateStopping},
	stateStopping: {stateStopped},
}

// transition moves the node from from to to, or refuses (logging at Error, since it is a bug or a lost race with
// Stop/Kill that the caller must handle).
func (n *Node) transition(from, to nodeState) error {
	return n.transitionFrom([]nodeState{from}, to)
}

func (n *Node) transitionFrom(from []nodeState, to nodeState) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	cur := n.state
	if !slices.Contains(from, cur) || !slices.Contains(transitions[cur], to) {
		err := fmt.Errorf("cluster: node is %s, cannot become %s", cur, to)
		if cur != stateKilled && cur != stateStopping && cur != stateStopped {
			n.log.Error("illegal node state transition", slog.String("from", cur.String()), slog.String("to", to.String()))
		}
		return err
	}
	n.state = to
	n.log.Debug("node state", slog.String("from", cur.String()), slog.String("to", to.String()))
	return nil
}
