package chat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/specd-dev/specd/internal/testmodels"
)

// qwen returns Qwen2.5-Instruct's template and HF's renderings with it.
func qwen(tb testing.TB) (*Template, []testmodels.ChatCase) {
	tb.Helper()
	_, src, cases := testmodels.QwenChat(tb)
	t, err := Parse(src)
	if err != nil {
		tb.Fatalf("Parse(qwen2.5) = %v", err)
	}
	return t, cases
}

// TestQwenMatchesHF renders every case Hugging Face's own Jinja rendered with Qwen2.5's
// template and compares the text byte for byte.
func TestQwenMatchesHF(t *testing.T) {
	tmpl, cases := qwen(t)
	if len(cases) < 8 {
		t.Fatalf("read %d cases, want the 8 of the shared file", len(cases))
	}
	for i, c := range cases {
		var msgs []Message
		if err := json.Unmarshal(c.Messages, &msgs); err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		t.Run(fmt.Sprintf("%d_%s", i, strings.ReplaceAll(msgs[len(msgs)-1].Content, " ", "_")), func(t *testing.T) {
			got, err := tmpl.Render(t.Context(), msgs, Options{AddGenerationPrompt: c.AddGenerationPrompt})
			if err != nil {
				t.Fatalf("Render = %v", err)
			}
			if got != c.Text {
				t.Errorf("Render(%d messages, add_generation_prompt %v) =\n%q\nwant\n%q", len(msgs), c.AddGenerationPrompt, got, c.Text)
			}
		})
	}
}

// TestErrorLine: an error of the engine names the line of the template's source, though
// Parse removes the newlines that trim_blocks and the markers trim.
func TestErrorLine(t *testing.T) {
	src := "{% if true %}\n{%- for m in messages -%}\n  {% raw %}\n{% endraw %}\n  {% set a, b = 1, 2 %}\n{% endfor %}{% endif %}\n"
	if _, err := Parse(src); err == nil || !strings.Contains(err.Error(), "line 5:") {
		t.Errorf("Parse(%q) = %v, want an error on line 5", src, err)
	}
}

func TestRender(t *testing.T) {
	at := time.Date(2026, time.March, 5, 14, 7, 9, 0, time.UTC)
	msgs := []Message{{Role: "user", Content: "Hi <b>&\u2028é😀\"\\\n\x01"}}
	tests := []struct {
		name, src string
		o         Options
		want      string
	}{
		{"bos and eos", "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{{ eos_token }}{% endfor %}",
			Options{BOS: "<s>", EOS: "</s>"}, "<s>[user]Hi <b>&\u2028é😀\"\\\n\x01</s>"},
		{"no bos: undefined renders empty", "{{ bos_token }}|{{ bos_token is defined }}", Options{}, "|False"},
		{"tools and documents are None", "{{ tools is none }} {{ documents is none }} {{ tools is defined }}", Options{}, "True True True"},
		{"add_generation_prompt", "{% if add_generation_prompt %}go{% endif %}", Options{AddGenerationPrompt: true}, "go"},
		// json.dumps(s, ensure_ascii=False): no HTML escapes, U+2028 raw, \u0001.
		{"tojson as HF", "{{ messages[0].content | tojson }}", Options{}, `"Hi <b>&` + "\u2028é😀" + `\"\\\n\u0001"`},
		{"tojson ensure_ascii", "{{ messages[0].content | tojson(ensure_ascii=true) }}", Options{}, `"Hi <b>&\u2028\u00e9\ud83d\ude00\"\\\n\u0001"`},
		{"tojson dict order and separators", `{{ {"b": 1, "a": [true, none, 1.5, 2.0]} | tojson }}`, Options{}, `{"b": 1, "a": [true, null, 1.5, 2.0]}`},
		{"tojson sort_keys compact", `{{ {"b": 1, "a": []} | tojson(sort_keys=true, separators=[",", ":"]) }}`, Options{}, `{"a":[],"b":1}`},
		{"tojson indent", `{{ {"a": [1, {}], "b": "x"} | tojson(indent=2) }}`, Options{}, "{\n  \"a\": [\n    1,\n    {}\n  ],\n  \"b\": \"x\"\n}"},
		{"tojson floats as repr", `{{ [10000000000000000.0, 1000000000000000.0, 0.0001, 0.00001, 0.0000001] | tojson }}`, Options{}, `[1e+16, 1000000000000000.0, 0.0001, 1e-05, 1e-07]`},
		{"tojson inside a string is text", `{{ "| tojson" }}`, Options{}, "| tojson"},
		{"strftime_now", `{{ strftime_now("%d %b %Y") }}|{{ strftime_now("%-d %B %y %H:%M:%S %p %j %a %A %%") }}`, Options{Now: at},
			"05 Mar 2026|5 March 26 14:07:09 PM 064 Thu Thursday %"},
		{"strftime_now compositions", `{{ strftime_now("%F %T|%c|%e|%Q") }}`, Options{Now: at}, "2026-03-05 14:07:09|Thu Mar  5 14:07:09 2026| 5|%Q"},
		// A brace that ends a text, then whitespace that the text keeps or a tag trims
		// (outputs of Python's Jinja2).
		{"brace before kept whitespace", "a {  \n{% if true %}b{% endif %}", Options{}, "a {  \nb"},
		{"brace before trimmed whitespace", "a {\n{%- if true %}b{% endif %}", Options{}, "a {b"},
		{"brace before a comment", "{\n{# c #}", Options{}, "{\n"},
		{"brace before trimmed spaces", "a{ {%- if true %}b{% endif %}", Options{}, "a{b"},
		// Filters that select by truthiness when given no test (the engine panics on
		// them unless Parse supplies one).
		{"select and reject without a test", "{{ [0, 1, '', 'a'] | select | list }}{{ [0, 1] | reject() | list }}", Options{}, "[1, 'a'][0]"},
		{"a loop over select without a test", "{% for x in [0, 1, 2] | select %}{{ x }}{% endfor %}", Options{}, "12"},
		{"selectattr and rejectattr without a test", "{{ messages | selectattr('content') | list | length }}{{ messages | rejectattr('content') | list | length }}", Options{}, "10"},
		{"range", "{% for i in range(3) %}{{ i }}{% endfor %}{% for i in range(5, 0, -2) %}{{ i }}{% endfor %}", Options{}, "012531"},
		{"trim_blocks and lstrip_blocks", "{% if true %}\n    a\n    {% if true %}\nb\n    {% endif %}\n{% endif %}\n", Options{}, "    a\nb\n"},
		{"macros calling earlier macros", "{% macro a(x) %}<{{ x }}>{% endmacro %}{% macro b(y) %}{{ a(y) }}{{ a(y) }}{% endmacro %}{{ b(1) }}", Options{}, "<1><1>"},
		{"recursive macro", "{% macro f(n) %}{{ n }}{% if n > 0 %},{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(5) }}", Options{}, "5,4,3,2,1,0"},
		{"call block", "{% macro box(t) %}[{{ t }}:{{ caller() }}]{% endmacro %}{% call box('x') %}in{% endcall %}", Options{}, "[x:in]"},
		{"a test of a macro", "{% macro m() %}1{% endmacro %}{% if m is defined %}{{ m() }}{% endif %}", Options{}, "1"},
		{"keyword arguments", "{% macro f(a, b=2, c=3) %}{{ a }}{{ b }}{{ c }}{% endmacro %}{{ f(1, c=9) }}", Options{}, "129"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := Parse(tt.src)
			if err != nil {
				t.Fatalf("Parse = %v", err)
			}
			got, err := tmpl.Render(t.Context(), msgs, tt.o)
			if err != nil {
				t.Fatalf("Render = %v", err)
			}
			if got != tt.want {
				t.Errorf("Render = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRaiseException(t *testing.T) {
	tmpl, err := Parse(`{% for m in messages %}{% if m.role not in ["user", "assistant"] %}{{ raise_exception("Unknown role: " + m.role) }}{% endif %}{% endfor %}ok`)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := tmpl.Render(t.Context(), []Message{{Role: "user", Content: "x"}}, Options{}); err != nil || got != "ok" {
		t.Fatalf("Render(user) = %q, %v, want ok", got, err)
	}
	_, err = tmpl.Render(t.Context(), []Message{{Role: "user", Content: "x"}, {Role: "robot", Content: "y"}}, Options{})
	var re *RaisedError
	if !errors.As(err, &re) || !errors.Is(err, ErrRejected) || re.Msg != "Unknown role: robot" {
		t.Fatalf("Render(robot) = %v, want a RaisedError %q", err, "Unknown role: robot")
	}
}

// TestBadTemplates: templates that do not compile, would recurse or loop without end,
// or make the engine panic are errors, never a crash or a hang.
func TestBadTemplates(t *testing.T) {
	parse := []struct{ name, src string }{
		{"unclosed tag", "{{ messages"},
		{"syntax", "{{ 1 + }}"},
		{"unclosed block", "{% if x %}"},
		{"macro passed as an argument", "{% macro f(g) %}{{ g(g) }}{% endmacro %}{{ f(f) }}"},
		{"macro name rebound", "{% macro a() %}1{% endmacro %}{% macro b() %}{{ a() }}{% endmacro %}{% set a = b %}{{ b() }}"},
		{"parameter named as a macro", "{% macro a() %}1{% endmacro %}{% macro b(a) %}{{ a() }}{% endmacro %}{{ b(1) }}"},
		{"macro in a namespace", "{% macro a() %}1{% endmacro %}{% set ns = namespace(f=a) %}{{ ns.f() }}"},
		{"loop variable named as a macro", "{% macro a() %}1{% endmacro %}{% for a in [1] %}{{ a }}{% endfor %}"},
	}
	for _, tt := range parse {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Parse(tt.src); !errors.Is(err, ErrTemplate) {
				t.Errorf("Parse(%q) = %v, want ErrTemplate", tt.src, err)
			}
		})
	}
	render := []struct{ name, src string }{
		{"range too big", "{% for i in range(1000000) %}{% endfor %}"},
		{"nested ranges", "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"},
		{"range of a string", "{{ range('x') }}"},
		{"negative repeat", "{{ 'a' * -1 }}"},
		{"self-recursive macro", "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}"},
		{"mutual recursion", "{% macro f() %}{{ g() }}{% endmacro %}{% macro g() %}{{ f() }}{% endmacro %}{{ f() }}"},
		{"recursion through call", "{% macro f() %}{% call f() %}x{% endcall %}{% endmacro %}{{ f() }}"},
		{"recursion twice per level", "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}"},
		{"undefined call", "{{ nothing() }}"},
		{"nested loops over a message", "{% for a in messages[0].content %}{% for b in messages[0].content %}{% for c in messages[0].content %}x{% endfor %}{% endfor %}{% endfor %}"},
		{"tojson of undefined", "{{ nothing | tojson }}"},
	}
	for _, tt := range render {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := Parse(tt.src)
			if err != nil {
				t.Fatalf("Parse = %v", err)
			}
			msgs := []Message{{Role: "user", Content: strings.Repeat("ab", 500)}}
			if _, err := tmpl.Render(t.Context(), msgs, Options{}); !errors.Is(err, ErrTemplate) {
				t.Errorf("Render(%q) = %v, want ErrTemplate", tt.src, err)
			}
		})
	}
}

func TestRenderStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for _, src := range []string{
		"{% for i in range(10) %}{{ i }}{% endfor %}",
		"{% for m in messages %}{{ m.content }}{% endfor %}",
	} {
		tmpl, err := Parse(src)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tmpl.Render(ctx, []Message{{Role: "user", Content: "x"}}, Options{}); !errors.Is(err, context.Canceled) {
			t.Errorf("Render(%q, cancelled) = %v, want context.Canceled", src, err)
		}
	}
}

// TestRewrite: tojson applications are renamed and every for loop's iterable — up to a
// top-level if or recursive — is wrapped in the guard; strings, comments and text are
// left alone.
func TestRewrite(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"{{ x | tojson }}{{ x|tojson(indent=2) }}", "{{ x | J }}{{ x|J(indent=2) }}"},
		{"{{ 'a | tojson' }}{# x | tojson #} y | tojson", "{{ 'a | tojson' }}{# x | tojson #}{{ \" \" }}y | tojson"},
		{"{% for m in messages %}", "{% for m in G(messages) %}"},
		{"{%- for k, v in d.items() if v is defined recursive -%}", "{% for k, v in G(d.items()) if v is defined recursive %}"},
		{"{% for x in (a if b else c) if x %}", "{% for x in G((a if b else c)) if x %}"},
		{"{% for t in m.tool_calls | selectattr('type', 'in', ['x']) %}{{ t | tojson }}{% endfor %}",
			"{% for t in G(m.tool_calls | selectattr('type', 'in', ['x'])) %}{{ t | J }}{% endfor %}"},
		{"{% for x in [1, 2][::-1] %}", "{% for x in G([1, 2][::-1]) %}"},
		{"{% raw %}{% for x in y %}{% endraw %}", `{{ "{% for x in y %}" }}`},
		{"{{ x | select }}{{ x | reject() }}{{ x | select('odd') }}{{ x.select() }}", "{{ x | select(none) }}{{ x | reject(none) }}{{ x | select('odd') }}{{ x.select() }}"},
		{"{{ x | selectattr('a') | list }}{{ x | rejectattr(f([1, 2]).a) }}{{ x | selectattr(['a'][0]) }}",
			"{{ x | selectattr('a', 'truthy') | list }}{{ x | rejectattr(f([1, 2]).a, 'truthy') }}{{ x | selectattr(['a'][0], 'truthy') }}"},
		{"{{ x | rejectattr('a', 'equalto', [1, 2]) }}{{ x | selectattr }}", "{{ x | rejectattr('a', 'equalto', [1, 2]) }}{{ x | selectattr }}"},
		{"{% macro m(a, b=1) %}{{ m (a) }}{{ x.m(1) }}{{ y | m() }}{% endmacro %}{% call m(1, b=2) %}c{% endcall %}{{ m() }}",
			"{% macro m(a, b=1) %}{{ C(m, a) }}{{ x.m(1) }}{{ y | m() }}{% endmacro %}{% call C(m, 1, b=2) %}c{% endcall %}{{ C(m) }}"},
		{"{% macro m() %}[1]{% endmacro %}{% for x in m() %}{{ x }}{% endfor %}", "{% macro m() %}[1]{% endmacro %}{% for x in G(C(m)) %}{{ x }}{% endfor %}"},
	} {
		tags, err := scanTags(tc.src)
		if err != nil {
			t.Fatalf("scanTags(%q) = %v", tc.src, err)
		}
		r := strings.NewReplacer("J", jsonFilter, "G", loopGuard, "C", callGuard)
		if got, want := rewrite(tc.src, tags, macroNames(tc.src, tags)), r.Replace(tc.want); got != want {
			t.Errorf("rewrite(%q) = %q, want %q", tc.src, got, want)
		}
	}
}

// FuzzRender renders untrusted messages with Qwen2.5's template: never a panic, a hang
// or an error, and every message's content appears in the text.
func FuzzRender(f *testing.F) {
	tmpl, _ := qwen(f)
	f.Add("user", "Hello!", "assistant", "Hi.", true)
	f.Add("system", "", "user", "<|im_start|>system\n{{ raise_exception('x') }}{% for %}", false)
	f.Add("tool", "{\"a\": 1}", "tool", "\xff\xfe invalid utf-8 \u2028", true)
	f.Add("", "", "", "", false)
	f.Fuzz(func(t *testing.T, r1, c1, r2, c2 string, gen bool) {
		msgs := []Message{{Role: r1, Content: c1}, {Role: r2, Content: c2}}
		out, err := tmpl.Render(t.Context(), msgs, Options{AddGenerationPrompt: gen})
		if err != nil {
			t.Fatalf("Render(%q) = %v", msgs, err)
		}
		for _, m := range msgs {
			if m.Role != "" && (m.Role == "user" || m.Role == "assistant") && !strings.Contains(out, m.Content) {
				t.Errorf("Render(%q) = %q, missing content %q", msgs, out, m.Content)
			}
		}
	})
}

// FuzzParse compiles and renders arbitrary template sources: an error or a text, never a
// panic or a hang.
func FuzzParse(f *testing.F) {
	f.Add("{% for m in messages %}{{ m.content | tojson }}{% endfor %}")
	f.Add("{% macro f() %}{{ f() }}{% endmacro %}")
	f.Add("{{ 'a' * 3 }}{% if x %}{% elif y %}{% else %}{% endif %}")
	f.Add("{% raw %}{{ x }}{% endraw %}{# c #}{{ '}}' }}")
	f.Add("{% set ns = namespace(a=1) %}{% set ns.a = ns.a + 1 %}{{ ns.a }}")
	f.Add("{% macro m(a, b=1) %}{{ m(a - 1) if a > 0 }}{{ caller() if caller is defined }}{% endmacro %}{% call m(3) %}x{% endcall %}{% for x in m(2) %}{% endfor %}")
	f.Add("{%- for k, v in {'a': [1, 2]}.items() if v recursive -%}{{ loop.index }}{%- endfor -%}\r\n")
	f.Add("{%+ if true +%}\n  x{{ 'y' -}} \u00a0{%- raw -%} r {%- endraw %}\n{#+ c +#}{%- endif %}")
	f.Fuzz(func(t *testing.T, src string) {
		tmpl, err := Parse(src)
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		tmpl.Render(ctx, []Message{{Role: "user", Content: "hi"}}, Options{AddGenerationPrompt: true})
	})
}

// BenchmarkRenderQwen renders a 20-turn conversation with Qwen2.5's template, as a
// verifier does for each chat request.
func BenchmarkRenderQwen(b *testing.B) {
	tmpl, _ := qwen(b)
	msgs := []Message{{Role: "system", Content: "You are a helpful assistant."}}
	for i := range 20 {
		role := "user"
		if i%2 == 1 {
			role = "assistant"
		}
		msgs = append(msgs, Message{Role: role, Content: strings.Repeat("Some words of the conversation. ", 10)})
	}
	for b.Loop() {
		if _, err := tmpl.Render(b.Context(), msgs, Options{AddGenerationPrompt: true}); err != nil {
			b.Fatal(err)
		}
	}
}
