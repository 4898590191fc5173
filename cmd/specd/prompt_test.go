package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/specd-dev/specd/internal/testmodels"
)

// TestPromptEOS: on model files whose vocabulary sets add_eos_token (and on the shipped
// target, which does not), `specd run` starts from the prompt ids llama.cpp b4748's
// llama-server gives, EOS last where the vocabulary asks, and `specd tokenize --bos`
// prints llama-tokenize's, which adds EOS only together with BOS (recorded in
// internal/testmodels/testdata).
func TestPromptEOS(t *testing.T) {
	ref := testmodels.LlamaServerPrompts(t)
	for _, name := range []string{"shipped", "add_eos", "add_eos,no_bos"} {
		v := ref.Variant(t, name)
		path := v.Path(t)
		for _, c := range v.Completions {
			stdout, stderr, code := run(t, "run", "-m", path, "-p", c.Prompt, "-n", "2", "--temp", "0", "--threads", "1", "--json")
			if code != 0 {
				t.Fatalf("%s: run %q: exit %d, stderr %q", name, c.Prompt, code, stderr)
			}
			var res runResult
			if err := json.Unmarshal([]byte(stdout), &res); err != nil {
				t.Fatalf("%s: run %q printed %q: %v", name, c.Prompt, stdout, err)
			}
			if !slices.Equal(res.PromptIDs, c.IDs) {
				t.Errorf("%s: run %q: prompt_ids %v, want llama-server's %v", name, c.Prompt, res.PromptIDs, c.IDs)
			}
			stdout, stderr, code = run(t, "tokenize", "-m", path, "-p", c.Prompt, "--bos")
			if want := strings.Trim(fmt.Sprint(c.TokenizeIDs), "[]") + "\n"; code != 0 || stdout != want {
				t.Errorf("%s: tokenize %q --bos: exit %d, stdout %q, stderr %q; want llama-tokenize's %q", name, c.Prompt, code, stdout, stderr, want)
			}
		}
	}
}
