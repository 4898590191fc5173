// Package speculationv1 is the Go code generated from
// specd/speculation/v1/speculation.proto, the internal API between specd's
// services: VerifierService (router to verifier) and DraftService (the
// verifier's speculation stream to a draft).
//
// Only doc.go is written by hand; regenerate the rest with .ci/proto.sh (or
// `go tool -modfile=tools/go.mod buf generate`). The package depends on the
// protobuf and gRPC runtimes and on specdv1 only.
package speculationv1
