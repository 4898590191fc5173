package grammar

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCorpus: every schema Pydantic 2 and zod (4, 3 through zod-to-json-schema, and the
// openai package's zodResponseFormat) wrote for testdata/schemas compiles, and the
// matcher takes each hand-written valid instance whole (as compact JSON) and refuses
// each invalid one, and each one outside the subset of spellings it writes. The
// instances were checked with jsonschema, Pydantic and zod (testdata/README.md).
func TestCorpus(t *testing.T) {
	raw, err := os.ReadFile("testdata/instances.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases map[string]map[string][]json.RawMessage
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob("testdata/schemas/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no schemas in testdata/schemas: %v", err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".json")
		t.Run(name, func(t *testing.T) {
			schema, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			f, err := SchemaFormat(schema)
			if err != nil {
				t.Fatalf("SchemaFormat: %v", err)
			}
			c, ok := cases[name]
			if !ok || len(c["valid"]) == 0 || len(c["invalid"]) == 0 {
				t.Fatalf("instances.json has no valid and invalid instances of %s", name)
			}
			for kind, want := range map[string]bool{"valid": true, "invalid": false, "outside": false} {
				for i, inst := range c[kind] {
					d := json.NewDecoder(strings.NewReader(string(inst)))
					d.UseNumber()
					var v any
					if err := d.Decode(&v); err != nil {
						t.Fatal(err)
					}
					text := compact(v)
					if _, whole := f.Check([]byte(text)); whole != want {
						t.Errorf("%s[%d] %s: whole %v, want %v", kind, i, text, whole, want)
					}
				}
			}
		})
	}
}
