package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/specd-dev/specd/gguf"
	"github.com/specd-dev/specd/internal/testmodels"
)

// TestChatTemplateCmd: `specd chat-template` prints Hugging Face's rendering of each
// shared Qwen2.5 case, from a template file and from a model's metadata; bad input is a
// usage error and a model without a template a clear failure.
func TestChatTemplateCmd(t *testing.T) {
	tmpl, src, cases := testmodels.QwenChat(t)
	withTemplate := testmodels.WithMetadata(t, "specd-draft-q8_0.gguf", gguf.KV{Key: "tokenizer.chat_template", Value: gguf.NewString(src)})
	tmp := t.TempDir()
	for n, c := range cases {
		msgs := filepath.Join(tmp, "messages.json")
		if err := os.WriteFile(msgs, c.Messages, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, source := range [][]string{{"--template", tmpl}, {"-m", withTemplate}} {
			args := append([]string{"chat-template", "--messages", msgs}, source...)
			if c.AddGenerationPrompt {
				args = append(args, "--add-generation-prompt")
			}
			stdout, stderr, code := run(t, args...)
			if code != 0 || stdout != c.Text {
				t.Errorf("case %d: specd %q: exit %d, stderr %q, stdout\n%q\nwant\n%q", n, args, code, stderr, stdout, c.Text)
			}
		}
	}

	write := func(name, text string) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.json", `[{"role": "user", "content": "Hi"}]`)
	for _, c := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"--messages", good}, 2, "-m MODEL or --template"},
		{[]string{"--template", tmpl}, 2, "--messages"},
		{[]string{"--template", tmpl, "--messages", write("bad.json", `{"role": "user"}`)}, 2, "JSON array"},
		{[]string{"--template", tmpl, "--messages", write("norole.json", `[{"role": "user", "content": "a"}, {"content": "b"}]`)}, 2, "messages[1].role"},
		{[]string{"--template", write("bad.jinja", "{% macro f(g) %}{{ g() }}{% endmacro %}{{ f(f) }}"), "--messages", good}, 2, "used as a value"},
		{[]string{"--template", write("deep.jinja", "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}"), "--messages", good}, 1, "nested deeper"},
		{[]string{"-m", "specd-draft-q8_0", "--messages", good}, 1, "no chat template"},
		{[]string{"--template", tmpl, "--messages", good, "--continue-final-message"}, 1, "not the assistant's"},
		{[]string{"--template", tmpl, "--messages", good, "--continue-final-message", "--add-generation-prompt"}, 2, "excludes"},
		{[]string{"--template", tmpl, "--messages", good, "--chat-template-kwargs", `{"messages": 1}`}, 2, "set by the server"},
		{[]string{"--template", write("raise.jinja", "{{ raise_exception('only system') }}"), "--messages", good}, 1, "only system"},
	} {
		_, stderr, code := run(t, append([]string{"chat-template"}, c.args...)...)
		if code != c.code || !strings.Contains(stderr, c.stderr) {
			t.Errorf("chat-template %q: exit %d, stderr %q; want exit %d mentioning %q", c.args, code, stderr, c.code, c.stderr)
		}
	}
	// A verifier's --chat-template is checked before anything starts.
	for _, f := range []string{filepath.Join(tmp, "missing.jinja"), filepath.Join(tmp, "bad.jinja")} {
		if _, stderr, code := run(t, "verifier", "--listen", "127.0.0.1:0", "--chat-template", f); code != 2 || !strings.Contains(stderr, "--chat-template") {
			t.Errorf("verifier --chat-template %s: exit %d, stderr %q; want exit 2 naming the flag", f, code, stderr)
		}
	}
}

// TestGenerateMessages: `specd generate --messages` against `specd up --chat-template`
// sends the conversation, which the verifier renders and tokenizes with special tokens
// (BOS first): the prompt it reports has that length. Both -p and --messages, or a
// message without a role, are usage errors.
func TestGenerateMessages(t *testing.T) {
	tmpl, _, _ := testmodels.QwenChat(t)
	addr := startUp(t, "--chat-template", tmpl)
	dir := t.TempDir()
	conv := filepath.Join(dir, "conv.json")
	if err := os.WriteFile(conv, []byte(`[{"role": "system", "content": "Tell stories."}, {"role": "user", "content": "Once upon a time"}]`), 0o644); err != nil {
		t.Fatal(err)
	}
	text, stderr, code := run(t, "chat-template", "--template", tmpl, "--messages", conv, "--add-generation-prompt")
	if code != 0 {
		t.Fatalf("chat-template: exit %d: %s", code, stderr)
	}
	if !strings.HasPrefix(text, "<|im_start|>system\nTell stories.<|im_end|>") {
		t.Fatalf("chat-template printed %q", text)
	}
	ids, stderr, code := run(t, "tokenize", "-m", "specd-target-q8_0", "-p", text, "--special", "--bos", "--json")
	if code != 0 {
		t.Fatalf("tokenize: exit %d: %s", code, stderr)
	}
	var tok struct{ IDs []int32 }
	if err := json.Unmarshal([]byte(ids), &tok); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := run(t, "generate", "--addr", addr, "--messages", conv, "-n", "8", "--json")
	if code != 0 {
		t.Fatalf("generate --messages: exit %d: %s", code, stderr)
	}
	var res generateResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("generate --messages: %v: %s", err, stdout)
	}
	if res.PromptTokens != len(tok.IDs) || res.Tokens != 8 {
		t.Errorf("generate --messages: %d prompt tokens and %d generated, want %d (tokenize --special --bos of the rendering) and 8", res.PromptTokens, res.Tokens, len(tok.IDs))
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`[{"role": "", "content": "x"}]`), 0o644); err != nil {
		t.Fatal(err)
	}
	// A prefill: the output continues the assistant's text, and equals what plain
	// decoding of the cut rendering (chat-template --continue-final-message) gives.
	pre := filepath.Join(dir, "prefill.json")
	if err := os.WriteFile(pre, []byte(`[{"role": "user", "content": "Tell me a story."}, {"role": "assistant", "content": "Once upon a time"}]`), 0o644); err != nil {
		t.Fatal(err)
	}
	cut, stderr, code := run(t, "chat-template", "--template", tmpl, "--messages", pre, "--continue-final-message")
	if code != 0 {
		t.Fatalf("chat-template --continue-final-message: exit %d: %s", code, stderr)
	}
	stdout, stderr, code = run(t, "generate", "--addr", addr, "--messages", pre, "--continue-final-message", "-n", "8", "--json")
	if code != 0 {
		t.Fatalf("generate --continue-final-message: exit %d: %s", code, stderr)
	}
	var cont generateResult
	if err := json.Unmarshal([]byte(stdout), &cont); err != nil {
		t.Fatalf("generate --continue-final-message: %v: %s", err, stdout)
	}
	ids, stderr, code = run(t, "tokenize", "-m", "specd-target-q8_0", "-p", cut, "--special", "--bos", "--json")
	if code != 0 {
		t.Fatalf("tokenize: exit %d: %s", code, stderr)
	}
	if err := json.Unmarshal([]byte(ids), &tok); err != nil {
		t.Fatal(err)
	}
	if cont.PromptTokens != len(tok.IDs) || cont.Tokens != 8 {
		t.Errorf("generate --continue-final-message: %d prompt tokens and %d generated, want %d (the cut rendering's) and 8", cont.PromptTokens, cont.Tokens, len(tok.IDs))
	}
	// As the API takes add_generation_prompt false beside continue_final_message (vLLM
	// wants it spelled out), --no-generation-prompt may go with the continuation.
	stdout, stderr, code = run(t, "generate", "--addr", addr, "--messages", pre, "--continue-final-message", "--no-generation-prompt", "-n", "8", "--json")
	var both generateResult
	if code != 0 || json.Unmarshal([]byte(stdout), &both) != nil || both.Text != cont.Text || both.PromptTokens != cont.PromptTokens {
		t.Errorf("generate --continue-final-message --no-generation-prompt: exit %d (%s), %s; want %+v", code, stderr, stdout, cont)
	}
	for _, args := range [][]string{{"-p", "x", "--messages", conv}, {"--messages", bad}, {"-p", "x", "--continue-final-message"},
		{"--messages", pre, "--chat-template-kwargs", `{"messages": 1}`}} {
		if _, stderr, code := run(t, append([]string{"generate", "--addr", addr}, args...)...); code != 2 {
			t.Errorf("generate %q: exit %d (%s), want 2", args, code, stderr)
		}
	}
}

// TestChatTemplateCmdPrefill: --continue-final-message prints the rendering cut after the
// assistant's content, and --chat-template-kwargs reaches the template.
func TestChatTemplateCmdPrefill(t *testing.T) {
	tmpl, _, _ := testmodels.QwenChat(t)
	dir := t.TempDir()
	conv := filepath.Join(dir, "conv.json")
	if err := os.WriteFile(conv, []byte(`[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Once upon"}]`), 0o644); err != nil {
		t.Fatal(err)
	}
	text, stderr, code := run(t, "chat-template", "--template", tmpl, "--messages", conv, "--continue-final-message")
	if want := "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nOnce upon"; code != 0 || !strings.HasSuffix(text, want) {
		t.Errorf("chat-template --continue-final-message: exit %d (%s), printed %q, want it to end with %q", code, stderr, text, want)
	}
	vars := filepath.Join(dir, "vars.jinja")
	if err := os.WriteFile(vars, []byte("{{ enable_thinking }}|{{ n + 1 }}"), 0o644); err != nil {
		t.Fatal(err)
	}
	text, stderr, code = run(t, "chat-template", "--template", vars, "--messages", conv, "--chat-template-kwargs", `{"enable_thinking": false, "n": 2}`)
	if code != 0 || text != "False|3" {
		t.Errorf("chat-template --chat-template-kwargs: exit %d (%s), printed %q, want %q", code, stderr, text, "False|3")
	}
}
