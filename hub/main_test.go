package hub

import (
	"testing"

	"go.uber.org/goleak"
)

// No download may leave a goroutine behind: stall timers, response bodies and the fake
// servers' connections all end with the test.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
