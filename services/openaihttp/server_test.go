package openaihttp_test

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/specd-dev/specd/internal/certtest"
	"github.com/specd-dev/specd/services/openaihttp"
)

// records is a slog.Handler that keeps what it is given.
type records struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec.Clone())
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

func (r *records) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.recs)
}

// TestServerErrorsSampled: what the HTTP server reports of clients that fail before a
// request — here plaintext spoken to the HTTPS front door, each a TLS handshake error
// — is logged as the gRPC servers' refusals are: one record per
// services.RefusalLogEvery, so that a scanner cannot fill the log — while a handler's
// panic, a bug, is logged every time.
func TestServerErrorsSampled(t *testing.T) {
	certPEM, keyPEM := certtest.NewCA(t, "specd test CA").Issue(t, certtest.Leaf{DNS: []string{"localhost"}})
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lis := tls.NewListener(tcp, &tls.Config{Certificates: []tls.Certificate{cert}})
	logs := &records{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- openaihttp.Serve(ctx, lis, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("a bug") }), time.Second, slog.New(logs))
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	const n = 20
	for range n {
		c, err := net.Dial("tcp", tcp.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.Copy(io.Discard, c) // until the server has given up on it
		c.Close()
	}
	if got := logs.len(); got != 1 {
		t.Errorf("%d records after %d failed handshakes, want 1", got, n)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer hc.CloseIdleConnections()
	for range 2 {
		if resp, err := hc.Get("https://" + tcp.Addr().String() + "/v1/models"); err == nil {
			resp.Body.Close()
		}
	}
	if got := logs.len(); got != 3 {
		t.Errorf("%d records after the handshakes and two panics, want 3", got)
	}
}
