package cors_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/specd-dev/specd/services/cors"
)

// TestParse: origins and one-star patterns are taken, anything else refused by name;
// an empty list is no policy.
func TestParse(t *testing.T) {
	for _, list := range [][]string{
		{"http://localhost:3000"}, {"*"}, {"http://localhost:*", "chrome-extension://*"}, {"https://*.example.com"},
		{"app://obsidian.md", " HTTP://127.0.0.1:8080 "}, {"http://[::1]:*"}, {"", "vscode-webview://*"},
	} {
		if p, err := cors.Parse(list); err != nil || p == nil {
			t.Errorf("Parse(%q) = %v, %v; want a policy", list, p, err)
		}
	}
	for _, list := range [][]string{nil, {}, {"", " "}} {
		if p, err := cors.Parse(list); err != nil || p != nil {
			t.Errorf("Parse(%q) = %v, %v; want no policy", list, p, err)
		}
	}
	for _, s := range []string{"localhost:3000", "://x", "http://", "http://a/b", "http://a?b", "http://u@a", "http://*.*", "ht tp://a", "http://a b", "null"} {
		if _, err := cors.Parse([]string{"http://ok", s}); !errors.Is(err, cors.ErrPattern) || !strings.Contains(err.Error(), strings.ToLower(strings.TrimSpace(s))) {
			t.Errorf("Parse(%q) = %v, want ErrPattern naming it", s, err)
		}
	}
}

// TestAllows: an exact origin matches itself alone, case-blind; a star any run of
// characters where it stands, within an origin a browser could send; "*" every
// origin.
func TestAllows(t *testing.T) {
	for _, tc := range []struct {
		list   []string
		origin string
		want   bool
	}{
		{[]string{"http://localhost:3000"}, "http://localhost:3000", true},
		{[]string{"http://localhost:3000"}, "http://LOCALHOST:3000", true},
		{[]string{"http://localhost:3000"}, "http://localhost:30000", false},
		{[]string{"http://localhost:3000"}, "https://localhost:3000", false},
		{[]string{"http://localhost:*"}, "http://localhost:8080", true},
		{[]string{"http://localhost:*"}, "http://localhost.evil.com", false},
		{[]string{"https://*.example.com"}, "https://a.example.com", true},
		{[]string{"https://*.example.com"}, "https://example.com", false},
		{[]string{"https://*.example.com"}, "https://evil.com", false},
		{[]string{"chrome-extension://*"}, "chrome-extension://abcdef", true},
		{[]string{"*"}, "https://anything.example", true},
		{[]string{"http://a", "http://b"}, "http://b", true},
		{[]string{"*"}, "", false},
		// A star matches within an origin a browser could send, nothing else.
		{[]string{"http://localhost:*"}, "http://localhost:3000.evil.com", false},
		{[]string{"http://localhost:*"}, "http://localhost:1@evil.com", false},
		{[]string{"http://localhost:*"}, "http://localhost:", false},
		{[]string{"https://*.example.com"}, "https://evil.com/.example.com", false},
		{[]string{"https://*.example.com"}, "https://evil.com?.example.com", false},
		{[]string{"https://*.example.com"}, "https://evil.com#.example.com", false},
		{[]string{"https://*.example.com"}, "https://evil.com:1:.example.com", false},
		{[]string{"https://*.example.com"}, "https://evil .example.com", false},
		{[]string{"https://*.example.com"}, "https://a.example.com:8443:x.example.com", false},
		{[]string{"http://*"}, "http://[::1]:8080", true},
		{[]string{"http://*"}, "http://[::1]", true},
		{[]string{"http://*"}, "http://[::1]x", false},
		{[]string{"http://*"}, "http://::1", false},
		{[]string{"http://[::1]:*"}, "http://[::1]:5173", true},
		{[]string{"chrome-extension://*"}, "chrome-extension://abc/def", false},
	} {
		p, err := cors.Parse(tc.list)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Allows(tc.origin); got != tc.want {
			t.Errorf("Parse(%q).Allows(%q) = %v, want %v", tc.list, tc.origin, got, tc.want)
		}
	}
	var none *cors.Policy
	if none.Allows("http://localhost") {
		t.Error("a nil policy allows an origin")
	}
}

// TestWrap: through a real server on loopback, a preflight from an allowed origin is
// answered before the handler (204, the methods, the headers asked for), one from
// another origin is a 403; other requests reach the handler, with
// Access-Control-Allow-Origin only for an allowed origin, and Vary: Origin always; a
// nil policy adds nothing.
func TestWrap(t *testing.T) {
	reached := 0
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached++
		w.Header().Set("Retry-After", "1")
		io.WriteString(w, "served")
	})
	p, err := cors.Parse([]string{"http://localhost:*"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p.Wrap(next))
	defer srv.Close()
	plain := httptest.NewServer((*cors.Policy)(nil).Wrap(next))
	defer plain.Close()

	for _, tc := range []struct {
		name, base, method, origin string
		preflight                  bool
		status                     int
		allowOrigin                string
		reached                    bool
	}{
		{"allowed preflight", srv.URL, "OPTIONS", "http://localhost:5173", true, 204, "http://localhost:5173", false},
		{"refused preflight", srv.URL, "OPTIONS", "https://evil.example", true, 403, "", false},
		{"allowed request", srv.URL, "POST", "http://localhost:5173", false, 200, "http://localhost:5173", true},
		{"other origin's request", srv.URL, "POST", "https://evil.example", false, 403, "", false},
		{"other origin's GET", srv.URL, "GET", "null", false, 403, "", false},
		{"no origin", srv.URL, "GET", "", false, 200, "", true},
		{"OPTIONS that is no preflight", srv.URL, "OPTIONS", "http://localhost:1", false, 200, "http://localhost:1", true},
		{"no policy, preflight", plain.URL, "OPTIONS", "http://localhost:5173", true, 403, "", false},
		{"no policy, request from a page", plain.URL, "POST", "http://localhost:5173", false, 403, "", false},
		{"no policy, no origin", plain.URL, "POST", "", false, 200, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := reached
			req, _ := http.NewRequest(tc.method, tc.base+"/api/chat", nil)
			if tc.origin != "" {
				req.Header.Set("Origin", tc.origin)
			}
			if tc.preflight {
				req.Header.Set("Access-Control-Request-Method", "POST")
				req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			h := resp.Header
			if resp.StatusCode != tc.status || h.Get("Access-Control-Allow-Origin") != tc.allowOrigin || (reached > before) != tc.reached {
				t.Errorf("%s %s from %q: %d, Allow-Origin %q, handler reached %v; want %d, %q, %v",
					tc.method, req.URL.Path, tc.origin, resp.StatusCode, h.Get("Access-Control-Allow-Origin"), reached > before, tc.status, tc.allowOrigin, tc.reached)
			}
			if tc.status == 204 && (h.Get("Access-Control-Allow-Methods") != cors.Methods || h.Get("Access-Control-Allow-Headers") != "authorization, content-type") {
				t.Errorf("preflight answer %v: want the methods %q and the headers asked for", h, cors.Methods)
			}
			if tc.allowOrigin != "" && tc.status == 200 && h.Get("Access-Control-Expose-Headers") != "Retry-After" {
				t.Errorf("allowed request: Expose-Headers %q, want Retry-After", h.Get("Access-Control-Expose-Headers"))
			}
			// Every answer of a policy varies with Origin, one to a request without it
			// too: a cache that kept that one (without Access-Control-Allow-Origin) must
			// not give it to a page of an allowed origin.
			if !strings.Contains(strings.Join(h.Values("Vary"), ","), "Origin") {
				t.Errorf("Vary %q, want Origin among them", h.Values("Vary"))
			}
			if h.Get("Access-Control-Allow-Credentials") != "" {
				t.Error("credentials allowed")
			}
		})
	}
}

// FuzzAllows: Parse and Allows never panic; a pattern without a star allows the
// origin it names; unless "*" allows every origin, an origin allowed has no path,
// query, fragment, user or white space, whatever the stars matched.
func FuzzAllows(f *testing.F) {
	for _, s := range [][2]string{
		{"http://localhost:*", "http://localhost:8080"}, {"https://*.example.com", "https://example.com"},
		{"*", "x"}, {"chrome-extension://abc", "CHROME-EXTENSION://ABC"}, {"http://a/b", "http://a"}, {"http://*", ""},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pat, origin string) {
		p, err := cors.Parse(strings.Split(pat, ","))
		if err != nil {
			return
		}
		any := false
		for _, s := range strings.Split(pat, ",") {
			any = any || strings.TrimSpace(s) == "*"
		}
		if _, rest, _ := strings.Cut(origin, "://"); p.Allows(origin) && !any && strings.ContainsAny(rest, "/?#@ \t") {
			t.Fatalf("Parse(%q).Allows(%q): an origin with a path, query, fragment, user or space", pat, origin)
		}
		if !strings.ContainsAny(pat, "*,") && p != nil && !p.Allows(strings.TrimSpace(pat)) {
			t.Fatalf("Parse(%q) does not allow the origin it names", pat)
		}
	})
}
