package hubtest

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

func do(t *testing.T, method, url, token, rng string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestHubRules: the fake answers as its doc says the Hub does.
func TestHubRules(t *testing.T) {
	s := New(t, Options{Token: "tok", PageSize: 2})
	sha := s.AddFile("o/r", "a.gguf", []byte("0123456789"), true)
	s.AddFile("o/r", "d/b.gguf", []byte("bb"), true)
	s.AddFile("o/r", "README.md", []byte("hi"), false)
	s.AddRepo("o/p", Private)
	s.AddRepo("o/g", Gated)
	s.AddFile("o/g", "g.gguf", []byte("g"), true)

	// Tree pages, linked; the repository has the .gitattributes the Hub creates.
	var paths []string
	var last map[string]any
	next := s.URL + "/api/models/o/r/tree/main?recursive=true"
	for pages := 0; next != ""; pages++ {
		resp, body := do(t, "GET", next, "", "")
		var page []map[string]any
		json.Unmarshal([]byte(body), &page)
		if resp.StatusCode != 200 || len(page) == 0 || len(page) > 2 || pages > 2 {
			t.Fatalf("page %d: %d %s, Link %q", pages, resp.StatusCode, body, resp.Header.Get("Link"))
		}
		for _, e := range page {
			paths = append(paths, e["path"].(string))
			last = e
		}
		next = ""
		if l := resp.Header.Get("Link"); l != "" {
			next = strings.TrimPrefix(strings.SplitN(l, ">", 2)[0], "<")
		}
	}
	if got, want := strings.Join(paths, " "), ".gitattributes README.md a.gguf d d/b.gguf"; got != want {
		t.Fatalf("listed %q, want %q", got, want)
	}
	if lfs := last["lfs"].(map[string]any); lfs["size"].(float64) != 2 || last["size"].(float64) != 2 {
		t.Errorf("LFS entry %v", last)
	}

	for _, tc := range []struct {
		url, token string
		status     int
		code       string
	}{
		{"/api/models/o/p/tree/main", "", 401, "RepoNotFound"},
		{"/api/models/o/p/tree/main", "tok", 200, ""},
		{"/api/models/o/none/tree/main", "", 401, "RepoNotFound"},
		{"/api/models/o/none/tree/main", "tok", 404, "RepoNotFound"},
		{"/api/models/o/r/tree/main", "wrong", 401, ""},
		{"/api/models/o/r/tree/v2", "", 404, "RevisionNotFound"},
		{"/o/r/resolve/main/missing.gguf", "", 404, "EntryNotFound"},
		{"/o/r/resolve/main/README.md", "", 200, ""},
		{"/o/r/resolve/main/a.gguf", "", 302, ""},
		{"/api/models/o/g/tree/main", "", 200, ""},
		{"/o/g/resolve/main/g.gguf", "", 401, "GatedRepo"},
		{"/o/g/resolve/main/g.gguf", "tok", 403, "GatedRepo"},
	} {
		resp, body := do(t, "GET", s.URL+tc.url, tc.token, "")
		if resp.StatusCode != tc.status || resp.Header.Get("X-Error-Code") != tc.code {
			t.Errorf("GET %s (token %q) = %d %q %s, want %d %q", tc.url, tc.token, resp.StatusCode, resp.Header.Get("X-Error-Code"), body, tc.status, tc.code)
		}
	}

	// The LFS redirect, then the CDN: Range honoured, a token refused.
	resp, _ := do(t, "GET", s.URL+"/o/r/resolve/main/a.gguf", "", "")
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, s.CDNURL+"/blobs/"+sha) || resp.Header.Get("X-Linked-Etag") != `"`+sha+`"` || resp.Header.Get("X-Linked-Size") != "10" {
		t.Fatalf("redirect %q, headers %v", loc, resp.Header)
	}
	if resp, body := do(t, "GET", loc, "", "bytes=4-"); resp.StatusCode != 206 || body != "456789" || resp.Header.Get("Content-Range") != "bytes 4-9/10" {
		t.Errorf("ranged CDN GET = %d %q %q", resp.StatusCode, body, resp.Header.Get("Content-Range"))
	}
	if resp, _ := do(t, "GET", loc, "tok", ""); resp.StatusCode != 400 {
		t.Errorf("CDN GET with a token = %d, want 400", resp.StatusCode)
	}
	s.IgnoreRange(true)
	if resp, body := do(t, "GET", loc, "", "bytes=4-"); resp.StatusCode != 200 || body != "0123456789" {
		t.Errorf("CDN GET ignoring Range = %d %q", resp.StatusCode, body)
	}
}
