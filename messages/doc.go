// Package messages holds Platter's protobuf messages and the code generated from them: workflow events, grain
// (virtual actor) services, actor state and the shapes the HTTP edge encodes. There is no hand-written logic here
// besides this file.
//
// Files (sources in proto/):
//   - restaurant.proto: the Restaurant grain (commands, view), its events and its state.
//   - entity.proto: what every actor records besides its own events: CommandApplied (de-duplication of retried
//     commands by command_id) and EntitySnapshot.
//   - errors.proto: ErrorReason, the catalogue of stable error codes; protoc-gen-go-grain generates
//     ErrNotFound(...)-style constructors and IsNotFound(err)-style tests for it.
//
// Every command that changes state carries a command_id; the receiving actor de-duplicates by it, because protoactor
// retries requests that timed out (PROTOACTOR-NOTES.md trap 4).
//
// `make proto` regenerates the Go code with the pinned buf, protoc-gen-go and protoactor's protoc-gen-go-grain, and
// `make test` fails when the committed code is stale.
package messages
