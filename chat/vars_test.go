package chat

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// parseFile compiles a template of testdata.
func parseFile(tb testing.TB, path string) *Template {
	tb.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	t, err := Parse(string(src))
	if err != nil {
		tb.Fatalf("Parse(%s) = %v", path, err)
	}
	return t
}

// TestContinueFinal renders a prefill with real templates: the text ends right after the
// final message's content, without the end of the turn, as Hugging Face's
// apply_chat_template(continue_final_message=True) cuts it.
func TestContinueFinal(t *testing.T) {
	qwen25, _ := qwen(t)
	templates := map[string]*Template{
		"qwen2.5": qwen25,
		"llama31": parseFile(t, filepath.Join("testdata", "tool_templates", "llama31.jinja")),
		"qwen3":   parseFile(t, filepath.Join("testdata", "think", "qwen3.jinja")),
	}
	const qwenSystem = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
	tests := []struct {
		tmpl, content, want string
	}{
		{"qwen2.5", "Hello, I am", qwenSystem + "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello, I am"},
		{"qwen2.5", "{", qwenSystem + "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n{"},
		// The template keeps the trailing space, and so does the cut.
		{"qwen2.5", "Sure: ", qwenSystem + "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nSure: "},
		// The template trims the content: the cut is after what it kept.
		{"qwen3", " Sure:\n", "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nSure:"},
		{"qwen3", "Hi", "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHi"}, // the last place
		// Content the end of the turn holds too: the cut is after the message, not inside
		// the <|im_end|> or <|eot_id|> that follows it.
		{"qwen2.5", "<", qwenSystem + "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<"},
		{"qwen2.5", "end", qwenSystem + "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nend"},
		{"qwen3", ">", "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n>"},
		{"llama31", "id", "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nid"},
		{"llama31", "The answer is ", "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nThe answer is"},
	}
	for _, tc := range tests {
		t.Run(tc.tmpl+"/"+tc.content, func(t *testing.T) {
			msgs := []Message{{Role: "user", Content: "Hi"}, {Role: "assistant", Content: tc.content}}
			got, err := templates[tc.tmpl].Render(t.Context(), msgs, Options{ContinueFinal: true})
			if err != nil {
				t.Fatalf("Render = %v", err)
			}
			if !strings.HasSuffix(got, tc.want) {
				t.Errorf("Render(continue %q) =\n%q\nwant it to end with\n%q", tc.content, got, tc.want)
			}
		})
	}
}

// TestContinueFinalErrors: a conversation that cannot be continued is ErrContinue, never
// a prompt that answers instead.
func TestContinueFinalErrors(t *testing.T) {
	qwen25, _ := qwen(t)
	upper, err := Parse("{% for m in messages %}[{{ m.role }}]{{ m.content | upper }}[end]{% endfor %}")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		t    *Template
		msgs []Message
		o    Options
	}{
		{"user last", qwen25, []Message{{Role: "user", Content: "Hi"}}, Options{ContinueFinal: true}},
		{"no messages", qwen25, nil, Options{ContinueFinal: true}},
		{"with the generation prompt", qwen25, []Message{{Role: "assistant", Content: "Hi"}}, Options{ContinueFinal: true, AddGenerationPrompt: true}},
		{"empty", qwen25, []Message{{Role: "user", Content: "Hi"}, {Role: "assistant", Content: " \n"}}, Options{ContinueFinal: true}},
		{"with tool calls", qwen25, []Message{{Role: "user", Content: "Hi"}, {Role: "assistant", Content: "Let me look.",
			ToolCalls: []ToolCall{{ID: "call_1", Function: FunctionCall{Name: "get_weather", Arguments: `{"city":"Paris"}`}}}}}, Options{ContinueFinal: true}},
		{"content rewritten", upper, []Message{{Role: "user", Content: "Hi"}, {Role: "assistant", Content: "Hello"}}, Options{ContinueFinal: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := tc.t.Render(t.Context(), tc.msgs, tc.o); !errors.Is(err, ErrContinue) {
				t.Errorf("Render = %q, %v, want ErrContinue", got, err)
			}
		})
	}
}

// TestVars: a request's variables reach the template (Qwen3's enable_thinking), with
// JSON's values as Python reads them.
func TestVars(t *testing.T) {
	qwen3 := parseFile(t, filepath.Join("testdata", "think", "qwen3.jinja"))
	generic, err := Parse(`{{ a }}|{{ b.c[1] }}|{{ n }}|{{ f | tojson }}|{{ none_ is none }}|{{ messages | length }}`)
	if err != nil {
		t.Fatal(err)
	}
	msgs := []Message{{Role: "user", Content: "Hi"}}
	tests := []struct {
		name string
		t    *Template
		vars string
		want string
	}{
		{"thinking on by default", qwen3, "", "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"},
		{"enable_thinking false", qwen3, `{"enable_thinking": false}`, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"},
		{"enable_thinking true", qwen3, `{"enable_thinking": true}`, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"},
		{"unread variables change nothing", qwen3, `{"other": [1, {"x": null}]}`, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"},
		{"json values", generic, `{"a": "x", "b": {"c": [1, 2.5]}, "n": 3, "f": 2.0, "none_": null}`, "x|2.5|3|2.0|True|1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := ParseVars(tc.vars)
			if err != nil {
				t.Fatalf("ParseVars(%s) = %v", tc.vars, err)
			}
			got, err := tc.t.Render(t.Context(), msgs, Options{AddGenerationPrompt: true, Vars: v})
			if err != nil {
				t.Fatalf("Render = %v", err)
			}
			if got != tc.want {
				t.Errorf("Render(vars %s) = %q, want %q", tc.vars, got, tc.want)
			}
		})
	}
}

func TestParseVarsErrors(t *testing.T) {
	for _, text := range []string{
		`[1]`, `"x"`, `1`, `{"a": 1} {}`, `{"a": }`, `{`,
		`{"messages": []}`, `{"tools": null}`, `{"add_generation_prompt": true}`, `{"bos_token": "x"}`,
		`{"eos_token": "x"}`, `{"documents": []}`, `{"raise_exception": 1}`, `{"namespace": 1}`, `{"specd_loop_guard": 1}`,
		`{"a b": 1}`, `{"1a": 1}`, `{"": 1}`, `{"é": 1}`,
		`{"a": ` + strings.Repeat("[", MaxVarsDepth+1) + strings.Repeat("]", MaxVarsDepth+1) + `}`,
		`{"a": "` + strings.Repeat("x", MaxVarsBytes) + `"}`,
	} {
		if _, err := ParseVars(text); !errors.Is(err, ErrVars) {
			name := text
			if len(name) > 60 {
				name = name[:60] + "…"
			}
			t.Errorf("ParseVars(%s) = %v, want ErrVars", name, err)
		}
	}
	for _, text := range []string{"", " null ", "{}", `{"a": ` + strings.Repeat("[", MaxVarsDepth) + strings.Repeat("]", MaxVarsDepth) + `}`} {
		if _, err := ParseVars(text); err != nil {
			t.Errorf("ParseVars(%s) = %v, want nil", text, err)
		}
	}
}

// FuzzContinue continues arbitrary assistant messages with Qwen2.5's template: the text
// ends with the message's content stripped of its white space, or Render says why not
// with ErrContinue; never a panic.
func FuzzContinue(f *testing.F) {
	tmpl, _ := qwen(f)
	for _, s := range []string{"{", "Once upon a time", " lead ", "<|im_end|>", "\xff\xfe", "", " \n", "a<|im_end|>\n<|im_start|>user\na", "<", "end", "im_end|>"} {
		f.Add("Hi", s)
	}
	f.Fuzz(func(t *testing.T, user, reply string) {
		msgs := []Message{{Role: "user", Content: user}, {Role: "assistant", Content: reply}}
		out, err := tmpl.Render(t.Context(), msgs, Options{ContinueFinal: true})
		if err != nil {
			if !errors.Is(err, ErrContinue) {
				t.Fatalf("Render(%q) = %v, want ErrContinue or success", msgs, err)
			}
			return
		}
		// Cut after the content as the template wrote it, its trailing white space
		// kept when the template kept it.
		if core := strings.TrimSpace(reply); !strings.HasSuffix(out, core) && !strings.HasSuffix(out, strings.TrimLeftFunc(reply, unicode.IsSpace)) {
			t.Fatalf("Render(%q) = %q, want it to end with %q", msgs, out, core)
		}
		// Qwen2.5's template writes a reply as it is and ends its turn with
		// <|im_end|>\n: the cut leaves out exactly that, wherever else the reply's
		// text appears.
		if strings.TrimSpace(reply) == reply && utf8.ValidString(reply) {
			full, err := tmpl.Render(t.Context(), msgs, Options{})
			if err != nil {
				t.Fatalf("Render(%q) without continuing = %v", msgs, err)
			}
			if want := strings.TrimSuffix(full, "<|im_end|>\n"); out != want {
				t.Fatalf("Render(%q) = %q, want %q", msgs, out, want)
			}
		}
	})
}

// FuzzVars parses arbitrary variables and renders with them: an error wrapping ErrVars
// or a rendering, never a panic; and valid JSON objects within the bounds that name no
// reserved variable are taken.
func FuzzVars(f *testing.F) {
	tmpl, err := Parse("{% for m in messages %}{{ m.content }}{% endfor %}{{ enable_thinking }}{{ a | tojson }}")
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{`{"enable_thinking": false}`, `{"a": [1, 2.5, "x", null, {"b": true}]}`, `{"messages": []}`,
		`{"a": 1, "a": 2}`, `[]`, `null`, ``, `{"a": 1e999}`, `{"1": 1}`, `{"a":[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]}`, "{\"\\ud800\": 1}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseVars(s)
		if err != nil {
			if !errors.Is(err, ErrVars) {
				t.Fatalf("ParseVars(%q) = %v, not wrapping ErrVars", s, err)
			}
			return
		}
		if _, err := tmpl.Render(t.Context(), []Message{{Role: "user", Content: "x"}}, Options{Vars: v}); err != nil && !errors.Is(err, ErrTemplate) {
			t.Fatalf("Render with ParseVars(%q) = %v", s, err)
		}
	})
}
