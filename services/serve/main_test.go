package serve_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: every server,
// stream, client connection and session must stop with its context.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
