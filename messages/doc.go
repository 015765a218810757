// Package messages holds Platter's protobuf messages and the code generated from them: workflow events,
// grain (virtual actor) services, and the shapes the HTTP edge encodes. There is no hand-written logic here
// besides this file.
//
// The sources are in proto/; `make proto` regenerates the Go code with the pinned buf, protoc-gen-go and
// protoactor's protoc-gen-go-grain, and `make test` fails when the committed code is stale.
package messages
