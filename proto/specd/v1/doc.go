// Package specdv1 is the Go code generated from specd/v1/generation.proto,
// specd's public API: GenerationService, served by the router.
//
// Only doc.go is written by hand; regenerate the rest with .ci/proto.sh (or
// `go tool -modfile=tools/go.mod buf generate`). The package depends on the
// protobuf and gRPC runtimes only.
package specdv1
