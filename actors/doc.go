// Package actors holds Platter's virtual actor kinds (one file each, transition table at the top) and the small
// machinery they share. It never imports http/ or node/.
//
// # Wiring
//
// A node builds its kinds with Kinds(Deps{Journal: j, Logger: l}) and hands them to the protoactor cluster
// (cluster.WithKinds). Deps travel with the kinds: each kind's props produce the generated grain actor wrapped
// together with the Deps, and the grain's Init reads them through ctx.Actor(). Nothing is registered per actor
// system, so several nodes in one process, and a node that rebuilds its actor system, each get their own Deps.
// Callers use the generated clients (messages.GetRestaurantGrainClient) with the kind names here (KindRestaurant).
// Each kind's actor routes its messages through hosted.receive (grain.go), which gives the grain what the
// generated dispatcher cannot handle: parked PollFeed requests and the activation's messages to itself.
//
// # How an actor handles a command
//
// Handlers are short: validate → decide → append → apply → reply. Decisions (decide*) are pure functions of the
// state, the command and the time, returning events or a refusal (*Error with a stable code); the fold (apply*)
// turns events into state. The shared entity (entity.go) does the rest for every kind:
//
//   - On activation it loads the identity's journal stream ("<kind>/<identity>"): newest snapshot plus the events
//     after it.
//   - Every command that changes state must carry a command_id (trap 4: protoactor retries timed-out requests).
//     The entity records messages.CommandApplied{command_id, fingerprint} before the command's events and keeps
//     the last Deps.RememberCommands ids in its state and snapshots; a retried command is answered again without
//     a second event, and a reused id with a different command is refused IDEMPOTENCY_KEY_REUSED. The journal
//     needs no separate idempotency table.
//   - Appends are fenced at the last sequence number the activation saw. If another activation of the same
//     identity wrote first (duplicate activations happen during membership changes, trap 1), the append fails
//     with journal.ErrConflict, the command is answered UNAVAILABLE (retry-safe: nothing was written), and the
//     activation stops; the next one reloads the winner's events.
//   - A snapshot is taken every Deps.SnapshotEvery events; an idle activation stops after Deps.PassivateAfter (Account
//     activations other than the signing keys after AccountConfig.PassivateAfter, 30 s: they are used at sign-in).
//
// # Messages, timers and feeds (docs/workflow.md)
//
// Decisions return, among their events, what the entity handles for every kind:
//
//   - sendTo(kind, identity, payload): a message to another actor, kept in the sender's outbox (outbox.go) and
//     delivered after the append to the receiver's Deliver rpc, one at a time per destination, retried with
//     back-off until acknowledged, also after a restart. The receiver applies it once: its inbox remembers the
//     highest out_seq per sender stream (InboxAdvanced, in the same append as the message's effects), and each
//     kind decides on payloads with a pure decideDeliver<Kind>(state, from, payload, now).
//   - setTimer(name, due) / clearTimer(name): durable timers (timers.go). The journal keeps the stream's earliest
//     due time as its reminder; a node's ReminderScanner (reminders.go; start one per node with
//     StartReminderScanner) wakes the owner through the cluster, which fires every due timer once.
//   - notify(msg, now): an entry in the actor's own feed (feed.go), written with the events. PollFeed answers
//     entries after a cursor at once, or parks until one arrives or the wait ends.
//
// # The Order, payments and invariants
//
// order.go is the source of truth of one order: its transition table (orderTransitions) and cancellation matrix
// are data at the top of the file, the kitchen and delivery statuses are kept apart, the SLA timers cancel by the
// matrix, and payments are authorised before PlaceOrder is decided (authorize.go: off the message loop, one
// gateway call per request, retried by the customer's outbox) and settled by the order's durable payment timer
// (payment_settle.go: the firing is written first, then one gateway call per action runs off the message loop and
// its outcome comes back as a message). A customer may cancel a placement that waits for the payment processor:
// with no call in flight the Order records a tombstone (placed and cancelled at once, nothing authorised), so the
// redelivered PlaceOrder is refused; the failed call may have placed a hold anyway (its answer lost), so the
// tombstone also queues a durable void that replays Authorize under the placement's key and voids what it answers.
// payment_sim.go is the built-in PaymentGateway with documented test card numbers. invariants.go checks a whole
// journal against DESIGN.md's rule 6 (CheckInvariants); the whole-workflow component tests end with it.
//
// # Errors
//
// Refusals carry a code from messages.ErrorReason. They travel back through the cluster as protoactor
// GrainErrorResponse (Reason and Metadata["code"] set to the code); AsError and ErrorCode turn any error an actor
// call returned into the code and client message the edge shows. Infrastructure failures are logged by the actor
// and answered UNAVAILABLE, with no detail.
package actors
