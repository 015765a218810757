package actors

// Timers: durable reminders (DESIGN rule 4, docs/workflow.md "Timers").
//
// A decision sets a timer by returning setTimer(name, due) among its events and removes one with clearTimer(name).
// The entity keeps the timers in its mailbox (saved in snapshots) and keeps the stream's journal reminder at the
// earliest due time, in the same append. While the actor is active it wakes itself at that time; when it is not
// (passivated, node restarted, identity moved), the reminder scanner of a node (reminders.go) finds the due
// reminder and sends Wake through the cluster. Either way the grain fires every due timer, earliest first: it
// calls the kind's timer decision (timerFunc) and appends TimerFired with the decision's events. A reminder fires
// at least once, a timer exactly once: TimerFired removes it in the same append as its effects. A timer whose due
// time passed while nobody ran fires at once on the next wake.

import (
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/platterhq/platter/messages"
)

// timerFunc is a kind's decision when its timer name fires: a pure function of the state, the timer and the
// time, returning events (sends, timers, feed items included) or a refusal (logged; the timer is removed).
type timerFunc[S proto.Message] func(state S, name string, now time.Time) ([]proto.Message, error)

// setTimer returns the event that sets (or moves) the deciding actor's timer name to due.
func setTimer(name string, due time.Time) *messages.TimerSet {
	return &messages.TimerSet{Name: name, Due: timestamppb.New(due)}
}

// clearTimer returns the event that removes the deciding actor's timer name (no effect when it is not set).
func clearTimer(name string) *messages.TimerCleared {
	return &messages.TimerCleared{Name: name}
}

// nextDue returns the timer due at or before now with the earliest due time (then the smallest name), skipping the
// names in skip.
func (m *mailbox) nextDue(now time.Time, skip map[string]bool) (name string, due time.Time, ok bool) {
	for n, d := range m.timers {
		if skip[n] || d.After(now) {
			continue
		}
		if !ok || d.Before(due) || (d.Equal(due) && n < name) {
			name, due, ok = n, d, true
		}
	}
	return name, due, ok
}

// earliest returns the earliest due time among the timers (ok false when there are none).
func (m *mailbox) earliest() (due time.Time, ok bool) {
	for _, d := range m.timers {
		if !ok || d.Before(due) {
			due, ok = d, true
		}
	}
	return due, ok
}

// wakeSelf is what an activation sends itself when it starts and when its earliest timer is due.
type wakeSelf struct{}

// scheduleTimer arms the activation's in-memory wake-up for its earliest timer (replacing the previous one). The
// delay is measured with Deps.Now, so a test clock that stands still leaves the firing to the reminder scanner.
func (g *grain[S]) scheduleTimer() {
	if g.timer != nil {
		g.timer.Stop()
		g.timer = nil
	}
	if g.entity == nil || g.entity.broken || g.stopping {
		return
	}
	due, ok := g.entity.box.earliest()
	if !ok {
		return
	}
	system, self := g.system, g.self
	g.timer = time.AfterFunc(max(due.Sub(g.deps.Now()), 0), func() { system.Root.Send(self, wakeSelf{}) })
}
