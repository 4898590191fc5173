package serve_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestNoSpanLeftOpen: whatever way a request ends — finished, cancelled by its client
// mid-stream, past its deadline, refused, an HTTP client gone mid-stream, Ollama's
// retry without a chat template — every span the router and verifier started ends
// (a span never ended is never exported: a trace viewer shows its children orphaned).
func TestNoSpanLeftOpen(t *testing.T) {
	rtel, rspans := recordSpans(t, "specd-router")
	vtel, vspans := recordSpans(t, "specd-verifier")
	s := startStackWith(t, stackOptions{rtel: rtel, vtel: vtel, http: true})
	const long = 400 // tokens: long enough to be cut mid-stream
	for _, tc := range []struct {
		name string
		run  func(t *testing.T)
	}{
		{"finished", func(t *testing.T) {
			if _, err := s.generate(context.Background(), request("Once upon a time", 16, 0, 0, 4)); err != nil {
				t.Fatal(err)
			}
		}},
		{"cancelled mid-stream", func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			st, err := s.client.Generate(ctx, request("Once upon a time", long, 0, 0, 4))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.Recv(); err != nil {
				t.Fatal(err)
			}
			cancel()
			for err == nil {
				_, err = st.Recv()
			}
		}},
		{"deadline", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
			defer cancel()
			s.generate(ctx, request("Once upon a time", long, 0, 0, 4))
		}},
		{"refused", func(t *testing.T) {
			r := request("Once upon a time", 8, 0, 0, 0)
			r.Sampling.Temperature = -1
			if _, err := s.generate(context.Background(), r); err == nil {
				t.Fatal("a negative temperature was accepted")
			}
		}},
		{"HTTP client gone mid-stream", func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.http+"/completions",
				strings.NewReader(`{"prompt":"Once upon a time","max_tokens":400,"stream":true,"n":2}`))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
				t.Fatal(err)
			}
			cancel()
			resp.Body.Close()
		}},
		{"Ollama without a chat template", func(t *testing.T) {
			resp, err := http.Post(s.ollamaBase()+"/api/generate", "application/json",
				strings.NewReader(`{"model":"specd-target","prompt":"Once","stream":false,"options":{"num_predict":4}}`))
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %s", resp.Status)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t)
			var open []string
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				open = openSpans(rspans, vspans)
				if len(open) == 0 || time.Now().After(deadline) {
					break
				}
			}
			if len(open) > 0 {
				t.Errorf("spans started and not ended 10 s after the request: %q", open)
			}
		})
	}
}

// openSpans lists the spans started and not (yet) ended.
func openSpans(recs ...*tracetest.SpanRecorder) []string {
	var open []string
	for _, rec := range recs {
		ended := map[[8]byte]bool{}
		for _, sp := range rec.Ended() {
			ended[sp.SpanContext().SpanID()] = true
		}
		for _, sp := range rec.Started() {
			if !ended[sp.SpanContext().SpanID()] {
				open = append(open, sp.SpanKind().String()+" "+sp.Name())
			}
		}
	}
	return open
}
