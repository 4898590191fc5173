package openaihttp_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/specd-dev/specd/services/openaihttp"
)

// TestHealth: GET /health answers 200 while the readiness check passes and 503, an
// OpenAI-shaped error carrying the check's reason, while it fails.
func TestHealth(t *testing.T) {
	h := openaihttp.NewHandler(nil, 0, 0, nil)
	for _, tc := range []struct {
		name   string
		ready  func(context.Context) error
		status int
	}{
		{"no check", nil, http.StatusOK},
		{"ready", func(context.Context) error { return nil }, http.StatusOK},
		{"no verifier", func(context.Context) error { return errors.New("no verifier is usable") }, http.StatusServiceUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.SetReady(tc.ready)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/health", nil))
			var body struct {
				Status string `json:"status"`
				Error  struct {
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", w.Body, err)
			}
			if w.Code != tc.status || (tc.status == http.StatusOK) != (body.Status == "ok") ||
				(tc.status != http.StatusOK && body.Error.Message != "no verifier is usable") {
				t.Errorf("GET /health = %d %s, want %d", w.Code, w.Body, tc.status)
			}
		})
	}
}
