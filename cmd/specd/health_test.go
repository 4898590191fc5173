package main

import (
	"strings"
	"testing"
)

// TestHealthLive: a router whose verifiers are all down answers NOT_SERVING, for the
// server as a whole too, so `specd health` fails, as a readiness probe should; with
// --live it succeeds, since the process answers: a liveness probe that passed only with
// a verifier up would have the kubelet restart every router during a verifier outage.
// Nothing answering fails both ways.
func TestHealthLive(t *testing.T) {
	addr, stop := startCommand(t, []string{"router", "--verifiers=127.0.0.1:1", "--drafts="}, `router serving.* addr=(\S+)`)
	defer stop()
	for _, c := range []struct {
		args []string
		code int
		want string // on stdout, or in stderr when failing
	}{
		{[]string{"--addr", addr}, 1, "NOT_SERVING"},
		{[]string{"--addr", addr, "--service", "specd.v1.GenerationService"}, 1, "NOT_SERVING"},
		{[]string{"--addr", addr, "--live"}, 0, "NOT_SERVING"},
		{[]string{"--addr", addr, "--live", "--service", "specd.v1.GenerationService"}, 0, "NOT_SERVING"},
		{[]string{"--addr", addr, "--live", "--service", "no.such.Service"}, 1, "NotFound"},
		{[]string{"--addr", "127.0.0.1:1", "--live"}, 1, "Unavailable"},
	} {
		stdout, stderr, code := run(t, append([]string{"health"}, c.args...)...)
		if code != c.code || !strings.Contains(stdout+stderr, c.want) {
			t.Errorf("health %q: exit %d, stdout %q, stderr %q; want exit %d saying %s", c.args, code, stdout, stderr, c.code, c.want)
		}
	}
}
