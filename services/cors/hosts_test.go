package cors_test

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/specd-dev/specd/services/cors"
)

// TestGuardHosts: on a loopback listener a request is answered when its Host names the
// server as a local client does (an IP address, localhost, a name under .localhost,
// this machine's name, the operator's names) and refused, 403 naming the flag, for a
// DNS name an attacker could point at 127.0.0.1; a listener elsewhere has no guard.
func TestGuardHosts(t *testing.T) {
	loop := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 11434}
	h, err := cors.Guard(loop, "Build-Box", []string{"chat.example.com", " *.corp.example ", ""})
	if err != nil || h == nil {
		t.Fatalf("Guard(loopback): %v, %v", h, err)
	}
	for _, c := range []struct {
		host string
		ok   bool
	}{
		{"127.0.0.1:11434", true},
		{"[::1]:11434", true},
		{"::1", true},
		{"localhost:11434", true},
		{"LOCALHOST", true},
		{"localhost.", true},
		{"app.localhost:3000", true},
		{"10.0.0.7:11434", true}, // an address: nothing to rebind
		{"build-box:11434", true},
		{"chat.example.com", true},
		{"a.b.corp.example:443", true},
		{"", true},
		{"attacker.example:11434", false},
		{"attacker.example", false},
		{"127.0.0.1.nip.io:11434", false},
		{"localhost.attacker.example", false},
		{"evilchat.example.com", false},
		{"corp.example", false}, // *.corp.example is its subdomains
		{"xcorp.example", false},
		{"build-box.attacker.example", false},
	} {
		if got := h.Allows(c.host); got != c.ok {
			t.Errorf("Allows(%q) = %v, want %v", c.host, got, c.ok)
		}
	}

	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	srv := h.Wrap(next)
	for host, want := range map[string]int{"localhost:11434": http.StatusTeapot, "attacker.example:11434": http.StatusForbidden} {
		req := httptest.NewRequest("GET", "/v1/models", nil)
		req.Host = host
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("GET with Host %s: %d, want %d", host, rec.Code, want)
		}
		if want == http.StatusForbidden && !strings.Contains(rec.Body.String(), "--http-allowed-hosts") {
			t.Errorf("the refusal %q does not name --http-allowed-hosts", rec.Body.String())
		}
	}

	for _, addr := range []net.Addr{&net.TCPAddr{IP: net.IPv4zero, Port: 80}, &net.TCPAddr{IP: net.IPv4(10, 0, 0, 7), Port: 80}, nil} {
		if g, err := cors.Guard(addr, "", []string{"chat.example.com"}); err != nil || g != nil {
			t.Errorf("Guard(%v) = %v, %v; want no guard", addr, g, err)
		}
	}
	if got := (*cors.Hosts)(nil).Wrap(next); got == nil {
		t.Error("a nil guard's Wrap returned nil")
	}
	for _, bad := range []string{"chat.example.com:8080", "http://chat.example.com", "*", "*.", "a/b", "[::1]", "a*b.example"} {
		if _, err := cors.Guard(loop, "", []string{bad}); !errors.Is(err, cors.ErrHostName) {
			t.Errorf("Guard with %q: %v, want ErrHostName", bad, err)
		}
	}
}
