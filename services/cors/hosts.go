package cors

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Hosts guards a front door that listens on a loopback address against DNS
// rebinding. A page of attacker.example whose name its DNS then points at 127.0.0.1
// is, to the browser, talking to its own origin: its requests carry no Origin the
// CORS check could refuse (a same-origin GET sends none) and the browser lets the page
// read the answers. What they do carry is Host: attacker.example. So a front door on
// loopback answers only requests whose Host names it as a local client does: an IP
// address (no DNS name, nothing to rebind), "localhost" or a name under ".localhost"
// (RFC 6761: always this machine), this machine's own name, or a name the operator
// lists (a reverse proxy on this machine that passes its public name on). Ollama
// guards its loopback listener the same way.
//
// A front door on any other address is reached through a network the operator chose
// to expose it on, where API keys and TLS are the guard; Guard returns no Hosts then.
type Hosts struct {
	self  string   // this machine's name, lower-case ("" if unknown)
	names []string // the operator's: whole names, or ".example.com" for its subdomains
}

// ErrHostName is wrapped by Guard's error for an allowed host that is not a host name.
var ErrHostName = errors.New("not a host name")

// Guard returns the guard of a front door listening on addr, allowing the names extra
// besides the local ones: nil (no guard) when addr is not a loopback address. Each of
// extra is a host name, or "*.NAME" for any name under NAME; an entry with a port, a
// scheme or a path is an error wrapping ErrHostName. self is this machine's name
// (os.Hostname), allowed too.
func Guard(addr net.Addr, self string, extra []string) (*Hosts, error) {
	h := &Hosts{self: strings.ToLower(strings.TrimSuffix(self, "."))}
	for _, s := range extra {
		s = strings.ToLower(strings.TrimSpace(s))
		if s == "" {
			continue
		}
		name, wild := strings.CutPrefix(s, "*.")
		if name == "" || strings.ContainsAny(name, ":/*@?# \t[]") {
			return nil, fmt.Errorf("%q: want a host name (api.example.com) or *.NAME, without port or scheme: %w", s, ErrHostName)
		}
		if wild {
			name = "." + name
		}
		h.names = append(h.names, name)
	}
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || !tcp.IP.IsLoopback() {
		return nil, nil
	}
	return h, nil
}

// Allows reports whether a request with Host host (with or without its port) may be
// answered.
func (h *Hosts) Allows(host string) bool {
	if h == nil || host == "" { // HTTP/1.0 sends none: no browser of today
		return true
	}
	name := host
	if n, _, err := net.SplitHostPort(host); err == nil {
		name = n
	}
	name = strings.TrimSuffix(strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(name, "["), "]")), ".")
	if _, err := netip.ParseAddr(name); err == nil {
		return true
	}
	if name == "localhost" || strings.HasSuffix(name, ".localhost") || name == h.self && h.self != "" {
		return true
	}
	for _, n := range h.names {
		if name == n || strings.HasPrefix(n, ".") && strings.HasSuffix(name, n) {
			return true
		}
	}
	return false
}

// Wrap returns next with h's check before it; next itself when h is nil.
func (h *Hosts) Wrap(next http.Handler) http.Handler {
	if h == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !h.Allows(r.Host) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprintf(w, "host %q is not allowed: this server listens on loopback and answers requests addressed to it by a local name "+
				"(a guard against DNS rebinding); a proxy that passes its own name on needs it in --http-allowed-hosts\n", r.Host)
			return
		}
		next.ServeHTTP(w, r)
	})
}
