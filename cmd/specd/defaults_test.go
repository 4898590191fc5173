package main

import (
	"encoding/json"
	"testing"
)

// TestRunFinishesWithContext: `specd run` asked for more tokens than the context holds
// (or for -n 0, "up to the context") stops when the context is full and says so.
func TestRunFinishesWithContext(t *testing.T) {
	for _, n := range []string{"600", "0"} {
		stdout, stderr, code := run(t, "run", "-m", "specd-target-q8_0", "-p", "Once upon a time", "-n", n, "--temp", "0", "--threads", "1", "--json")
		if code != 0 {
			t.Fatalf("run -n %s: exit %d: %s", n, code, stderr)
		}
		var res struct {
			PromptIDs    []int32 `json:"prompt_ids"`
			OutputIDs    []int32 `json:"output_ids"`
			FinishReason string  `json:"finish_reason"`
		}
		if err := json.Unmarshal([]byte(stdout), &res); err != nil {
			t.Fatalf("run -n %s: %v: %s", n, err, stdout)
		}
		if res.FinishReason != "context" || len(res.PromptIDs)+len(res.OutputIDs) != 512 {
			t.Errorf("run -n %s: finish %q after %d+%d tokens, want \"context\" at the context of 512", n, res.FinishReason, len(res.PromptIDs), len(res.OutputIDs))
		}
	}
}

// TestGenerateIsGreedyByDefault: `specd generate` without --temp decodes greedily, as
// the API does with sampling unset: the same tokens as --temp 0, every time; and -n 0
// runs to the end of the context.
func TestGenerateIsGreedyByDefault(t *testing.T) {
	addr := startUp(t)
	gen := func(args ...string) generateResult {
		t.Helper()
		stdout, stderr, code := run(t, append([]string{"generate", "--addr", addr, "-p", "Once upon a time", "--json"}, args...)...)
		if code != 0 {
			t.Fatalf("generate %v: exit %d: %s", args, code, stderr)
		}
		var res generateResult
		if err := json.Unmarshal([]byte(stdout), &res); err != nil {
			t.Fatalf("generate %v: %v: %s", args, err, stdout)
		}
		return res
	}
	want := gen("-n", "32", "--temp", "0").Text
	for i := range 3 {
		if got := gen("-n", "32").Text; got != want {
			t.Fatalf("default run %d: %q, want the greedy %q", i, got, want)
		}
	}
	if res := gen("-n", "0"); res.FinishReason != "context" || res.PromptTokens+res.Tokens != 512 {
		t.Errorf("-n 0: finish %q after %d+%d tokens, want \"context\" at 512", res.FinishReason, res.PromptTokens, res.Tokens)
	}
}
