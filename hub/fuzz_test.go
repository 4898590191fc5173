package hub

import (
	"net/url"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

// The Hub's answers and the user's references are untrusted: none of them may panic,
// and nothing accepted may name a path outside the repository's folder.

func FuzzParseRef(f *testing.F) {
	for _, s := range []string{"Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M", "hf:a/b", "hf.co/a/b:x/y.gguf", "a/b:../x.gguf", "a/b:c:d", "", "a--b/c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRef(s)
		if err != nil {
			return
		}
		dir := "/models"
		p := LocalPath(dir, r.Repo, cmpOr(r.File, "x.gguf"))
		rel, err := filepath.Rel(filepath.Join(dir, "hf"), p)
		if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || !strings.HasPrefix(p, filepath.Join(dir, "hf")+string(filepath.Separator)) {
			t.Fatalf("ParseRef(%q) = %+v leads to %s", s, r, p)
		}
		if r2, err := ParseRef(r.String()); err != nil || r2 != r {
			t.Fatalf("ParseRef(%q).String() = %q does not parse back: %+v, %v", s, r.String(), r2, err)
		}
	})
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func FuzzParseTree(f *testing.F) {
	f.Add([]byte(`[{"type":"file","oid":"` + strings.Repeat("b", 40) + `","size":10,"path":"README.md"}]`))
	f.Add([]byte(`[{"type":"file","oid":"x","size":99,"path":"sub/m.gguf","lfs":{"oid":"` + strings.Repeat("a", 64) + `","size":99}}]`))
	f.Add([]byte(`[{"type":"directory","path":".."}]`))
	f.Add([]byte(`[{"type":"file","oid":"` + strings.Repeat("c", 40) + `","size":1519,"path":".gitattributes"},{"type":"file","oid":"` + strings.Repeat("c", 40) + `","size":1,"path":".x/../../m.gguf"}]`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		files, err := parseTree(b)
		if err != nil {
			return
		}
		for _, fl := range files {
			if fl.Size < 0 || path.IsAbs(fl.Path) || strings.Contains(fl.Path, "..") || fl.Digest.Hex == "" {
				t.Fatalf("parseTree accepted %+v", fl)
			}
		}
		Select(files, Ref{Repo: "a/b"})
	})
}

func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-9/10", "bytes 5-9/*", "bytes 9-5/10", "bytes x-y/z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		start, total, err := parseContentRange(s)
		if err == nil && (start < 0 || (total != -1 && total <= start)) {
			t.Fatalf("parseContentRange(%q) = %d, %d", s, start, total)
		}
	})
}

func FuzzNextLink(f *testing.F) {
	f.Add(`<https://h/x?cursor=1>; rel="next"`)
	f.Add(`</x>; rel=next, <y>; rel=prev`)
	page, _ := url.Parse("https://h/api/models/a/b/tree/main")
	f.Fuzz(func(t *testing.T, s string) {
		next, err := nextLink(page, []string{s})
		if err != nil || next == "" {
			return
		}
		u, perr := url.Parse(next)
		if perr != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			t.Fatalf("nextLink(%q) = %q", s, next)
		}
	})
}
