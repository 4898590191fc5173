package chat

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestMatchesJinja2 renders the templates of testdata/templates — written for this test
// to exercise layout whitespace, tojson's options, namespaces, macros, filters, string
// methods, raise_exception and strftime_now, plus Phi-3's template from the shared
// vocabulary — over ordinary and hostile conversations, and compares each text (or
// raised message) with Python Jinja2's in Hugging Face's configuration
// (testdata/hf_render.py wrote testdata/hf_cases.jsonl).
func TestMatchesJinja2(t *testing.T) {
	now := time.Date(2026, time.March, 5, 14, 7, 9, 0, time.UTC)
	templates := map[string]*Template{}
	for _, c := range readCases(t, "hf_cases.jsonl") {
		tmpl, ok := templates[c.Template]
		if !ok {
			src, err := os.ReadFile(filepath.Join("testdata", "templates", c.Template))
			if err != nil {
				t.Fatal(err)
			}
			if tmpl, err = Parse(string(src)); err != nil {
				t.Fatalf("Parse(%s) = %v", c.Template, err)
			}
			templates[c.Template] = tmpl
		}
		t.Run(c.name(), func(t *testing.T) {
			checkRender(t, tmpl, c.Messages, Options{AddGenerationPrompt: c.AddGenerationPrompt, BOS: "<s>", EOS: "</s>", Now: now}, c.Text, c.Error)
		})
	}
}

// renderCase is one line of a file hf_render.py, tool_render.py or tools_render.py
// wrote: a conversation (with tools, of tools_render.py) and what Jinja2 renders it
// to, or the message the template raised.
type renderCase struct {
	Template            string    `json:"template"`
	Conversation        string    `json:"conversation"`
	Messages            []Message `json:"messages"`
	AddGenerationPrompt bool      `json:"add_generation_prompt"`
	Text                *string   `json:"text"`
	Error               *string   `json:"error"`
	// Tools are the request's tools (their fields' names as json tags would spell
	// them: encoding/json matches names without regard to case).
	Tools []FunctionDefinition `json:"tools"`
}

func (c renderCase) name() string {
	name := c.Template + "/" + c.Conversation
	if c.AddGenerationPrompt {
		name += "/generation_prompt"
	}
	return name
}

// readCases reads the cases of testdata/file, failing on none.
func readCases(t *testing.T, file string) []renderCase {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cases []renderCase
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var c renderCase
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatalf("%s: case %d: %v", file, len(cases), err)
		}
		cases = append(cases, c)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(cases) == 0 {
		t.Fatalf("%s: no cases", file)
	}
	return cases
}

// checkRender renders msgs with tmpl and checks the result: text, or (text nil) the
// template raising raised.
func checkRender(t *testing.T, tmpl *Template, msgs []Message, o Options, text, raised *string) {
	t.Helper()
	got, err := tmpl.Render(t.Context(), msgs, o)
	if text == nil {
		var re *RaisedError
		if !errors.As(err, &re) || re.Msg != *raised {
			t.Errorf("Render = %q, %v; want the template to raise %q", got, err, *raised)
		}
		return
	}
	if err != nil {
		t.Fatalf("Render = %v", err)
	}
	if got != *text {
		t.Errorf("Render =\n%q\nwant\n%q", got, *text)
	}
}

// TestSpaceMatchesJinja2 renders random arrangements of tags, whitespace control markers
// ("-" and "+"), raw blocks, braces and whitespace, and compares each text with
// Jinja2's in Hugging Face's configuration (testdata/space_render.py wrote
// testdata/space_cases.jsonl).
func TestSpaceMatchesJinja2(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "space_cases.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		var c struct{ Template, Text string }
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatalf("case %d: %v", n, err)
		}
		n++
		tmpl, err := Parse(c.Template)
		if err != nil {
			t.Errorf("Parse(%q) = %v", c.Template, err)
			continue
		}
		got, err := tmpl.Render(t.Context(), nil, Options{BOS: "<s>", EOS: "</s>"})
		if err != nil || got != c.Text {
			t.Errorf("Render(%q) = %q, %v; want %q", c.Template, got, err, c.Text)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n < 400 {
		t.Fatalf("read %d cases, want the 400 of the file", n)
	}
}
