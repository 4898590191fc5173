package main

import (
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
		{[]string{"--template", write("bad.jinja", "{% macro f() %}{{ f() }}{% endmacro %}"), "--messages", good}, 2, "recursive"},
		{[]string{"-m", "specd-draft-q8_0", "--messages", good}, 1, "no chat template"},
		{[]string{"--template", write("raise.jinja", "{{ raise_exception('only system') }}"), "--messages", good}, 1, "only system"},
	} {
		_, stderr, code := run(t, append([]string{"chat-template"}, c.args...)...)
		if code != c.code || !strings.Contains(stderr, c.stderr) {
			t.Errorf("chat-template %q: exit %d, stderr %q; want exit %d mentioning %q", c.args, code, stderr, c.code, c.stderr)
		}
	}
}
