package serve_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// TestOpenAITokenize: POST /tokenize and /detokenize on `specd up`'s front door give
// the verifier's tokenization, vLLM-shaped, and invert each other; GET /health is 200
// while the stack serves.
func TestOpenAITokenize(t *testing.T) {
	s := startStackWith(t, stackOptions{http: true})
	root := strings.TrimSuffix(s.http, "/v1")
	post := func(path, body string, out any) int {
		t.Helper()
		resp, err := http.Post(root+path, "application/json", bytes.NewBufferString(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		return resp.StatusCode
	}
	const text = "Once upon a time, there was a cat."
	var tok struct {
		Count       int      `json:"count"`
		MaxModelLen int      `json:"max_model_len"`
		Tokens      []int32  `json:"tokens"`
		TokenStrs   []string `json:"token_strs"`
	}
	if code := post("/tokenize", `{"prompt": "`+text+`", "return_token_strs": true}`, &tok); code != http.StatusOK {
		t.Fatalf("POST /tokenize = %d", code)
	}
	want := s.target.Tok.Encode(text, true)
	if !slices.Equal(tok.Tokens, want) || tok.Count != len(want) || tok.MaxModelLen != s.target.Context || len(tok.TokenStrs) != len(want) || tok.TokenStrs[0] != "<s>" {
		t.Errorf("POST /tokenize = %+v, want tokens %v, max_model_len %d and their pieces", tok, want, s.target.Context)
	}
	tok.TokenStrs = nil
	if post("/tokenize", `{"model": "specd-target", "prompt": "`+text+`", "add_special_tokens": false}`, &tok); !slices.Equal(tok.Tokens, want[1:]) || tok.TokenStrs != nil {
		t.Errorf("without special tokens: %+v, want %v and no token_strs", tok, want[1:])
	}

	var de struct {
		Prompt string `json:"prompt"`
	}
	ids, _ := json.Marshal(append(want, s.target.Tok.EOS()))
	for _, tc := range []struct{ body, want string }{
		{`{"tokens": ` + string(ids) + `}`, "<s> " + text + "</s>"},
		{`{"tokens": ` + string(ids) + `, "skip_special_tokens": true}`, text},
		{`{"tokens": []}`, ""},
	} {
		if code := post("/detokenize", tc.body, &de); code != http.StatusOK || de.Prompt != tc.want {
			t.Errorf("POST /detokenize %s = %d %q, want %q", tc.body, code, de.Prompt, tc.want)
		}
	}

	var e struct {
		Error struct {
			Param   string `json:"param"`
			Message string `json:"message"`
		} `json:"error"`
	}
	for _, tc := range []struct {
		path, body, param string
		status            int
	}{
		{"/tokenize", `{}`, "prompt", http.StatusBadRequest},
		{"/tokenize", `{"messages": [{"role": "user", "content": "hi"}]}`, "messages", http.StatusBadRequest},
		{"/tokenize", `{"prompt": "x", "model": "gpt-17"}`, "model", http.StatusNotFound},
		{"/detokenize", `{}`, "tokens", http.StatusBadRequest},
		{"/detokenize", `{"tokens": [5, 99999]}`, "tokens", http.StatusBadRequest},
		{"/detokenize", `{"tokens": "5"}`, "tokens", http.StatusBadRequest},
	} {
		e.Error.Param = ""
		if code := post(tc.path, tc.body, &e); code != tc.status || e.Error.Param != tc.param {
			t.Errorf("POST %s %s = %d, param %q (%s); want %d naming %q", tc.path, tc.body, code, e.Error.Param, e.Error.Message, tc.status, tc.param)
		}
	}

	resp, err := http.Get(root + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /health = %d while the stack serves, want 200", resp.StatusCode)
	}
}
