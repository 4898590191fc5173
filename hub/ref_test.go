package hub

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

func TestParseRef(t *testing.T) {
	cases := []struct {
		in   string
		want Ref
	}{
		{"Qwen/Qwen2.5-0.5B-Instruct-GGUF", Ref{Repo: "Qwen/Qwen2.5-0.5B-Instruct-GGUF"}},
		{"Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M", Ref{Repo: "Qwen/Qwen2.5-0.5B-Instruct-GGUF", Tag: "Q4_K_M"}},
		{"hf:bartowski/Llama-3.2-1B-Instruct-GGUF:q8_0", Ref{Repo: "bartowski/Llama-3.2-1B-Instruct-GGUF", Tag: "q8_0"}},
		{"hf.co/unsloth/Qwen3-0.6B-GGUF:UD-Q4_K_XL", Ref{Repo: "unsloth/Qwen3-0.6B-GGUF", Tag: "UD-Q4_K_XL"}},
		{"https://huggingface.co/a/b:m.Q4_K_M.gguf", Ref{Repo: "a/b", File: "m.Q4_K_M.gguf"}},
		{"a/b:sub/dir/model.GGUF", Ref{Repo: "a/b", File: "sub/dir/model.GGUF"}},
		// Ollama's and llama.cpp's name for the default quantization.
		{"hf.co/a/b:latest", Ref{Repo: "a/b"}},
		{"a/b:LATEST", Ref{Repo: "a/b"}},
	}
	for _, tc := range cases {
		got, err := ParseRef(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseRef(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{
		"", "qwen", "a/b/c", "/b", "a/", "a/b:", "a/b:Q4 K", "../b", "a/..", "a/.hidden", "a--x/b",
		"a/b:../x.gguf", "a/b:/abs.gguf", "a/b:dir/readme.md", "a/b:x//y.gguf", "a/b:c:d", "-a/b", "a/b.",
		"a/b:" + strings.Repeat("Q", 65),
	} {
		if r, err := ParseRef(bad); !errors.Is(err, ErrBadRef) {
			t.Errorf("ParseRef(%q) = %+v, %v; want ErrBadRef", bad, r, err)
		}
	}
}

func files(paths ...string) []File {
	out := make([]File, len(paths))
	for i, p := range paths {
		out[i] = File{Path: p, Size: 1}
	}
	return out
}

func TestSelect(t *testing.T) {
	qwen := files(".gitattributes", "README.md",
		"qwen2.5-0.5b-instruct-q4_k_m.gguf", "qwen2.5-0.5b-instruct-q4_k_s.gguf", "qwen2.5-0.5b-instruct-q4_0.gguf",
		"qwen2.5-0.5b-instruct-q4_0_4_4.gguf", "qwen2.5-0.5b-instruct-q8_0.gguf", "qwen2.5-0.5b-instruct-fp16.gguf",
		"mmproj-model-f16.gguf")
	split := files("big/Q4_K_M/big-Q4_K_M-00001-of-00002.gguf", "big/Q4_K_M/big-Q4_K_M-00002-of-00002.gguf", "big-Q8_0.gguf")
	dup := files("m-Q4_K_M.gguf", "imat/m-Q4_K_M.gguf")
	single := files("only.Q5_K_M.gguf", "README.md")
	cases := []struct {
		name  string
		files []File
		ref   Ref
		want  string
		err   error
	}{
		{"tag", qwen, Ref{Repo: "q/q", Tag: "Q4_K_M"}, "qwen2.5-0.5b-instruct-q4_k_m.gguf", nil},
		{"tag, any case", qwen, Ref{Repo: "q/q", Tag: "q8_0"}, "qwen2.5-0.5b-instruct-q8_0.gguf", nil},
		{"Q4_0 is not Q4_0_4_4", qwen, Ref{Repo: "q/q", Tag: "Q4_0"}, "qwen2.5-0.5b-instruct-q4_0.gguf", nil},
		{"Q4_K matches no K_M or K_S", qwen, Ref{Repo: "q/q", Tag: "Q4_K"}, "", ErrNoMatch},
		{"default", qwen, Ref{Repo: "q/q"}, "qwen2.5-0.5b-instruct-q4_k_m.gguf", nil},
		{"projector is no model", qwen, Ref{Repo: "q/q", Tag: "F16"}, "", ErrNoMatch},
		{"file", qwen, Ref{Repo: "q/q", File: "qwen2.5-0.5b-instruct-fp16.gguf"}, "qwen2.5-0.5b-instruct-fp16.gguf", nil},
		{"missing file", qwen, Ref{Repo: "q/q", File: "nope.gguf"}, "", ErrNoMatch},
		{"default with one file", single, Ref{Repo: "q/q"}, "only.Q5_K_M.gguf", nil},
		{"split", split, Ref{Repo: "q/q", Tag: "Q4_K_M"}, "", ErrSplit},
		{"split by file", split, Ref{Repo: "q/q", File: "big/Q4_K_M/big-Q4_K_M-00001-of-00002.gguf"}, "", ErrSplit},
		{"beside a split", split, Ref{Repo: "q/q", Tag: "q8_0"}, "big-Q8_0.gguf", nil},
		{"ambiguous", dup, Ref{Repo: "q/q", Tag: "Q4_K_M"}, "", ErrAmbiguous},
		{"ambiguous base name", dup, Ref{Repo: "q/q", File: "m-Q4_K_M.gguf"}, "m-Q4_K_M.gguf", nil},
		{"by path", dup, Ref{Repo: "q/q", File: "imat/m-Q4_K_M.gguf"}, "imat/m-Q4_K_M.gguf", nil},
		{"no default among many", files("a-Q8_0.gguf", "a-Q6_K.gguf"), Ref{Repo: "q/q"}, "", ErrNoMatch},
		{"no GGUF at all", files("model.safetensors"), Ref{Repo: "q/q", Tag: "Q4_K_M"}, "", ErrNoMatch},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Select(tc.files, tc.ref)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("Select(%v) = %+v, %v; want %v", tc.ref, got, err, tc.err)
				}
				return
			}
			if err != nil || got.Path != tc.want {
				t.Fatalf("Select(%v) = %q, %v; want %q", tc.ref, got.Path, err, tc.want)
			}
		})
	}
	// The errors list what there is to choose from.
	_, err := Select(qwen, Ref{Repo: "q/q", Tag: "Q2_K"})
	if err == nil || !strings.Contains(err.Error(), "qwen2.5-0.5b-instruct-q8_0.gguf") || strings.Contains(err.Error(), "README") {
		t.Errorf("no-match error %q: want the GGUF files listed, and only those", err)
	}
	_, err = Select(dup, Ref{Repo: "q/q", Tag: "Q4_K_M"})
	if err == nil || !strings.Contains(err.Error(), "imat/m-Q4_K_M.gguf") {
		t.Errorf("ambiguity error %q: want both candidates listed", err)
	}
}

func TestParseTree(t *testing.T) {
	sha := strings.Repeat("a", 64)
	good := `[{"type":"file","oid":"` + strings.Repeat("d", 40) + `","size":1519,"path":".gitattributes"},
	{"type":"file","oid":"` + strings.Repeat("d", 40) + `","size":15,"path":".github/workflows/ci.yml"},
	{"type":"directory","oid":"x","size":0,"path":"sub"},
	{"type":"file","oid":"` + strings.Repeat("b", 40) + `","size":10,"path":"README.md"},
	{"type":"file","oid":"` + strings.Repeat("c", 40) + `","size":99,"path":"sub/m.gguf","lfs":{"oid":"` + strings.ToUpper(sha) + `","size":99,"pointerSize":134}}]`
	fs, err := parseTree([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	want := []File{
		{Path: "README.md", Size: 10, Digest: Digest{GitSHA1, strings.Repeat("b", 40)}},
		{Path: "sub/m.gguf", Size: 99, Digest: Digest{SHA256, sha}},
	}
	if len(fs) != len(want) || fs[0] != want[0] || fs[1] != want[1] {
		t.Fatalf("parseTree = %+v, want %+v", fs, want)
	}
	for _, bad := range []string{
		`{}`, `[{"type":"file","path":"../x.gguf","size":1,"oid":"` + strings.Repeat("b", 40) + `"}]`,
		`[{"type":"file","path":"a.gguf","size":1,"oid":"short"}]`,
		`[{"type":"file","path":"a.gguf","oid":"` + strings.Repeat("b", 40) + `"}]`,
		`[{"type":"file","path":"a.gguf","size":1,"oid":"` + strings.Repeat("b", 40) + `","lfs":{"oid":"` + sha + `"}}]`,
		`[{"type":"file","path":"a.gguf","size":1,"oid":"` + strings.Repeat("b", 40) + `","lfs":{"oid":"zz","size":1}}]`,
		`[{"type":"file","path":"/etc/passwd","size":1,"oid":"` + strings.Repeat("b", 40) + `"}]`,
		`[{"type":"file","path":"sub/../../x.gguf","size":1,"oid":"` + strings.Repeat("b", 40) + `"}]`,
		`[{"type":"file","path":"./x.gguf","size":1,"oid":"` + strings.Repeat("b", 40) + `"}]`,
	} {
		if fs, err := parseTree([]byte(bad)); err == nil {
			t.Errorf("parseTree(%s) = %+v, want an error", bad, fs)
		}
	}
}

func TestNextLink(t *testing.T) {
	page, _ := url.Parse("https://hub.example/api/models/a/b/tree/main?recursive=true")
	cases := []struct {
		links []string
		want  string
	}{
		{nil, ""},
		{[]string{`<https://hub.example/api/models/a/b/tree/main?recursive=true&cursor=abc>; rel="next"`}, "https://hub.example/api/models/a/b/tree/main?recursive=true&cursor=abc"},
		{[]string{`</api/x?cursor=2>; rel=prev, </api/x?cursor=3>; rel="next"`}, "https://hub.example/api/x?cursor=3"},
		{[]string{`<https://hub.example/x>; rel="prev"`}, ""},
	}
	for _, tc := range cases {
		got, err := nextLink(page, tc.links)
		if err != nil || got != tc.want {
			t.Errorf("nextLink(%q) = %q, %v; want %q", tc.links, got, err, tc.want)
		}
	}
	if got, err := nextLink(page, []string{`<javascript:alert(1)>; rel="next"`}); err == nil {
		t.Errorf("nextLink to javascript: = %q, want an error", got)
	}
}

func TestParseContentRange(t *testing.T) {
	cases := []struct {
		in           string
		start, total int64
		ok           bool
	}{
		{"bytes 100-199/200", 100, 200, true},
		{"bytes 0-0/*", 0, -1, true},
		{"bytes 100-199/150", 0, 0, false},
		{"bytes 5-4/10", 0, 0, false},
		{"bytes -1-4/10", 0, 0, false},
		{"items 0-1/2", 0, 0, false},
		{"bytes 0-1", 0, 0, false},
		{"", 0, 0, false},
	}
	for _, tc := range cases {
		start, total, err := parseContentRange(tc.in)
		if (err == nil) != tc.ok || (tc.ok && (start != tc.start || total != tc.total)) {
			t.Errorf("parseContentRange(%q) = %d, %d, %v", tc.in, start, total, err)
		}
	}
}

func TestHasTag(t *testing.T) {
	cases := []struct {
		name, tag string
		want      bool
	}{
		{"model-Q4_K_M.gguf", "q4_k_m", true},
		{"Q4_K_M/model-00001-of-00002.gguf", "Q4_K_M", true},
		{"model.Q4_K_M.gguf", "Q4_K", false},
		{"model-Q4_0_4_4.gguf", "Q4_0", false},
		{"model_q4_0.gguf", "Q4_0", true},
		{"modelq4_0.gguf", "Q4_0", false},
		{"model-IQ4_XS.gguf", "Q4_XS", false},
		{"model-UD-Q4_K_XL.gguf", "Q4_K_XL", true},
	}
	for _, tc := range cases {
		if got := hasTag(tc.name, tc.tag); got != tc.want {
			t.Errorf("hasTag(%q, %q) = %v, want %v", tc.name, tc.tag, got, tc.want)
		}
	}
}
