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
	f, err := os.Open(filepath.Join("testdata", "hf_cases.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	now := time.Date(2026, time.March, 5, 14, 7, 9, 0, time.UTC)
	templates := map[string]*Template{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		var c struct {
			Template            string    `json:"template"`
			Conversation        string    `json:"conversation"`
			Messages            []Message `json:"messages"`
			AddGenerationPrompt bool      `json:"add_generation_prompt"`
			Text                *string   `json:"text"`
			Error               *string   `json:"error"`
		}
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatalf("case %d: %v", n, err)
		}
		n++
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
		name := c.Template + "/" + c.Conversation
		if c.AddGenerationPrompt {
			name += "/generation_prompt"
		}
		t.Run(name, func(t *testing.T) {
			got, err := tmpl.Render(t.Context(), c.Messages, Options{AddGenerationPrompt: c.AddGenerationPrompt, BOS: "<s>", EOS: "</s>", Now: now})
			if c.Error != nil {
				var re *RaisedError
				if !errors.As(err, &re) || re.Msg != *c.Error {
					t.Errorf("Render = %q, %v; want the template to raise %q", got, err, *c.Error)
				}
				return
			}
			if err != nil {
				t.Fatalf("Render = %v", err)
			}
			if got != *c.Text {
				t.Errorf("Render =\n%q\nwant\n%q", got, *c.Text)
			}
		})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no cases")
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
