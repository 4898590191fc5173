// Package cors answers browsers' Cross-Origin Resource Sharing checks for specd's
// HTTP front door, so that a web page or browser extension an operator trusts (the
// `ollama/browser` client, Page Assist, a chat UI served from another port) may call
// the OpenAI-compatible and Ollama APIs directly, as Ollama allows its own origins
// (OLLAMA_ORIGINS). It knows nothing of the APIs it wraps: it depends on net/http
// alone.
//
// A Policy lists the origins allowed. A request from one of them gets
// Access-Control-Allow-Origin naming it, and its preflight (OPTIONS with
// Access-Control-Request-Method) is answered here, 204, with the methods the front
// door serves and the headers the browser asked for. Every request of any other
// origin, preflight or not, is a 403 and never reaches the APIs, as Ollama refuses
// origins it was not told of: a page a user happens to open cannot make a local
// server generate (a form or a text/plain POST needs no preflight), even though it
// could not read the answer. A request without Origin is no browser's cross-origin
// request and passes. Credentials (cookies) are never allowed: a key goes in the
// Authorization header, which a page sets itself.
package cors

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Policy is the origins allowed. A nil *Policy allows none.
type Policy struct {
	any      bool      // "*": every origin
	patterns []pattern // otherwise these
}

// pattern is an allowed origin, lower-case: the whole origin, or (wild) what comes
// before and after its one "*".
type pattern struct {
	prefix, suffix string
	wild           bool
}

// ErrPattern is wrapped by Parse's error for a pattern that is not an origin.
var ErrPattern = errors.New("not an origin pattern")

// Parse reads the allowed origins: "*" (any origin), or each a serialized origin,
// SCHEME://HOST[:PORT] with no path ("http://localhost:3000", "app://obsidian.md"),
// in which one "*" stands for any run of characters ("http://localhost:*",
// "chrome-extension://*", "https://*.example.com"). Empty entries are skipped; none
// at all is a nil Policy. A malformed pattern is an error wrapping ErrPattern.
func Parse(list []string) (*Policy, error) {
	p := &Policy{}
	for _, s := range list {
		s = strings.ToLower(strings.TrimSpace(s))
		switch {
		case s == "":
			continue
		case s == "*":
			p.any = true
			continue
		}
		scheme, rest, ok := strings.Cut(s, "://")
		switch {
		case !ok || scheme == "" || strings.Trim(scheme, "abcdefghijklmnopqrstuvwxyz0123456789+-.") != "":
			return nil, fmt.Errorf("%q: want SCHEME://HOST[:PORT]: %w", s, ErrPattern)
		case rest == "" || strings.ContainsAny(rest, "/?#@ \t"):
			return nil, fmt.Errorf("%q: an origin has a host and no path, query or user: %w", s, ErrPattern)
		case strings.Count(s, "*") > 1:
			return nil, fmt.Errorf("%q: at most one *: %w", s, ErrPattern)
		}
		pre, suf, wild := strings.Cut(s, "*")
		p.patterns = append(p.patterns, pattern{prefix: pre, suffix: suf, wild: wild})
	}
	if !p.any && len(p.patterns) == 0 {
		return nil, nil
	}
	return p, nil
}

// Allows reports whether a request whose Origin header is origin may read answers.
// A pattern's star matches only within an origin a browser could send (see
// serialized): "http://localhost:*" allows no "http://localhost:1.evil.com", nor
// "https://*.example.com" an "https://evil.com/.example.com".
func (p *Policy) Allows(origin string) bool {
	if p == nil || origin == "" {
		return false
	}
	if p.any {
		return true
	}
	o := strings.ToLower(origin)
	for _, pt := range p.patterns {
		if !pt.wild && o == pt.prefix ||
			pt.wild && len(o) >= len(pt.prefix)+len(pt.suffix) && strings.HasPrefix(o, pt.prefix) && strings.HasSuffix(o, pt.suffix) && serialized(o) {
			return true
		}
	}
	return false
}

// serialized reports whether o (lower-case) has the form of an origin as browsers
// serialize it: SCHEME://HOST[:PORT], the host a name or an IPv6 address in brackets,
// the port digits, with no path, query, fragment, user or white space.
func serialized(o string) bool {
	scheme, rest, ok := strings.Cut(o, "://")
	if !ok || scheme == "" || scheme[0] < 'a' || scheme[0] > 'z' || strings.Trim(scheme, "abcdefghijklmnopqrstuvwxyz0123456789+-.") != "" {
		return false
	}
	if rest == "" || strings.IndexFunc(rest, func(c rune) bool { return c <= ' ' || c >= 0x7f || strings.ContainsRune("/?#@\\", c) }) >= 0 {
		return false
	}
	host, port := rest, ""
	if strings.HasPrefix(rest, "[") {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return false
		}
		host, port = rest[:end+1], rest[end+1:]
		if port != "" && port[0] != ':' {
			return false
		}
		port = strings.TrimPrefix(port, ":")
		if port == "" && len(rest) > end+1 {
			return false // "[::1]:" with no port
		}
	} else if i := strings.LastIndexByte(rest, ':'); i >= 0 {
		host, port = rest[:i], rest[i+1:]
		if port == "" {
			return false
		}
	}
	return host != "" && strings.Trim(port, "0123456789") == "" && (strings.HasPrefix(host, "[") || !strings.Contains(host, ":"))
}

// Methods are the methods a preflight allows: those the front door serves.
const Methods = "GET, HEAD, POST"

// Wrap returns next with p's checks before it.
func (p *Policy) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Every answer varies with Origin, one without CORS headers too: a shared
		// cache must not give the answer to a request without Origin (or from an
		// origin refused) to a page of an allowed origin, nor the reverse.
		h := w.Header()
		h.Add("Vary", "Origin")
		origin := r.Header.Get("Origin")
		if origin == "" {
			next.ServeHTTP(w, r) // not a cross-origin request from a browser
			return
		}
		preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
		if !p.Allows(origin) {
			h.Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprintf(w, "origin %q is not allowed to call this server (--http-cors-origins)\n", origin)
			return
		}
		h.Set("Access-Control-Allow-Origin", origin)
		if !preflight {
			h.Set("Access-Control-Expose-Headers", "Retry-After")
			next.ServeHTTP(w, r)
			return
		}
		h.Add("Vary", "Access-Control-Request-Method")
		h.Add("Vary", "Access-Control-Request-Headers")
		h.Set("Access-Control-Allow-Methods", Methods)
		if rh := r.Header.Get("Access-Control-Request-Headers"); rh != "" {
			h.Set("Access-Control-Allow-Headers", rh)
		}
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
	})
}
