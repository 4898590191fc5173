//go:build !amd64

package kernels

import "testing"

// halfPaths runs f on the only path there is off amd64.
func halfPaths(t *testing.T, f func(t *testing.T)) { t.Run("generic", f) }
