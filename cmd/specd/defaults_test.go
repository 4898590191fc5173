package main

import (
	"encoding/json"
	"net"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc"

	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
)

// TestRunFinishesWithContext: `specd run` asked for more tokens than the context holds
// (or for -n 0, "up to the context") stops when the context is full and says so.
func TestRunFinishesWithContext(t *testing.T) {
	for _, n := range []string{"600", "0"} {
		stdout, stderr, code := run(t, "run", "-m", "specd-target-q8_0", "-p", "Once upon a time", "-n", n, "--temp", "0", "--threads", "1", "--json")
		if code != 0 {
			t.Fatalf("run -n %s: exit %d: %s", n, code, stderr)
		}
		var res struct {
			PromptIDs    []int32 `json:"prompt_ids"`
			OutputIDs    []int32 `json:"output_ids"`
			FinishReason string  `json:"finish_reason"`
		}
		if err := json.Unmarshal([]byte(stdout), &res); err != nil {
			t.Fatalf("run -n %s: %v: %s", n, err, stdout)
		}
		if res.FinishReason != "context" || len(res.PromptIDs)+len(res.OutputIDs) != 512 {
			t.Errorf("run -n %s: finish %q after %d+%d tokens, want \"context\" at the context of 512", n, res.FinishReason, len(res.PromptIDs), len(res.OutputIDs))
		}
	}
}

// TestGenerateIsGreedyByDefault: `specd generate` without --temp decodes greedily, as
// the API does with sampling unset: the same tokens as --temp 0, every time; and -n 0
// runs to the end of the context.
func TestGenerateIsGreedyByDefault(t *testing.T) {
	addr := startUp(t)
	gen := func(args ...string) generateResult {
		t.Helper()
		stdout, stderr, code := run(t, append([]string{"generate", "--addr", addr, "-p", "Once upon a time", "--json"}, args...)...)
		if code != 0 {
			t.Fatalf("generate %v: exit %d: %s", args, code, stderr)
		}
		var res generateResult
		if err := json.Unmarshal([]byte(stdout), &res); err != nil {
			t.Fatalf("generate %v: %v: %s", args, err, stdout)
		}
		return res
	}
	want := gen("-n", "32", "--temp", "0").Text
	for i := range 3 {
		if got := gen("-n", "32").Text; got != want {
			t.Fatalf("default run %d: %q, want the greedy %q", i, got, want)
		}
	}
	if res := gen("-n", "0"); res.FinishReason != "context" || res.PromptTokens+res.Tokens != 512 {
		t.Errorf("-n 0: finish %q after %d+%d tokens, want \"context\" at 512", res.FinishReason, res.PromptTokens, res.Tokens)
	}
}

// TestGenerateLogprobs: `specd generate --logprobs --top-logprobs 3 --json` reports a
// log-probability per output token, with three likeliest tokens in order, the greedy
// token first among them; the text is each token's bytes in turn; and the flags in text
// mode print one line per token.
func TestGenerateLogprobs(t *testing.T) {
	addr := startUp(t)
	stdout, stderr, code := run(t, "generate", "--addr", addr, "-p", "Once upon a time", "-n", "12", "--logprobs", "--top-logprobs", "3", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var res generateResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	if len(res.Logprobs) != len(res.OutputIDs) || len(res.OutputIDs) != 12 {
		t.Fatalf("%d logprobs for %d tokens, want 12 of each", len(res.Logprobs), len(res.OutputIDs))
	}
	var text string
	for i, lp := range res.Logprobs {
		text += lp.Token
		if len(lp.Top) != 3 || lp.Top[0].ID != res.OutputIDs[i] || lp.Top[0].Logprob != lp.Logprob ||
			lp.Top[1].Logprob > lp.Top[0].Logprob || lp.Top[2].Logprob > lp.Top[1].Logprob || lp.Logprob > 0 {
			t.Errorf("token %d (%d): %+v: want the greedy token first of three, in order", i, res.OutputIDs[i], lp)
		}
	}
	if text != res.Text {
		t.Errorf("the tokens spell %q, the text is %q", text, res.Text)
	}
	_, stderr, code = run(t, "generate", "--addr", addr, "-p", "Once upon a time", "-n", "5", "--logprobs")
	if lines := strings.Count(stderr, "\n"); code != 0 || lines != 6 {
		t.Errorf("text mode: exit %d, %d lines on stderr, want 5 tokens' and the summary:\n%s", code, lines, stderr)
	}
	if _, stderr, code := run(t, "generate", "--addr", addr, "-p", "x", "--top-logprobs", "2"); code != 2 || !strings.Contains(stderr, "--top-logprobs needs --logprobs") {
		t.Errorf("--top-logprobs alone: exit %d: %s", code, stderr)
	}
}

// TestLogprobJSONSplitCharacter: in `specd generate --json`, a token holding part of a
// UTF-8 character (a byte-level vocabulary splits one over tokens) keeps its bytes,
// written out as OpenAI's completions API writes them ("bytes:\xe4\xbd"), instead of
// each becoming U+FFFD as encoding/json makes of bytes that are not UTF-8; whole
// characters stay as they are.
func TestLogprobJSONSplitCharacter(t *testing.T) {
	lp := &specdv1.TokenLogprob{Logprob: -1, Token: []byte{0xe4, 0xbd}, Top: []*specdv1.TopLogprob{
		{TokenId: 7, Logprob: -1, Token: []byte{0xe4, 0xbd}}, {TokenId: 9, Logprob: -2, Token: []byte("你")}}}
	b, err := json.Marshal(logprobJSON(lp))
	if err != nil {
		t.Fatal(err)
	}
	var got tokenLogprob
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if want := `bytes:\xe4\xbd`; got.Token != want || len(got.Top) != 2 || got.Top[0].Token != want || got.Top[1].Token != "你" {
		t.Errorf("logprobJSON of a split character, through JSON = %s; want token and top[0] %q, top[1] %q", b, want, "你")
	}
}

// mismatchedRouter is a GenerationService, served over real gRPC on loopback, that
// answers every Generate with a chunk of one token carrying two log-probabilities: a
// router no real one is, to see what the client makes of it.
type mismatchedRouter struct {
	specdv1.UnimplementedGenerationServiceServer
}

func (mismatchedRouter) Generate(_ *specdv1.GenerateRequest, st specdv1.GenerationService_GenerateServer) error {
	lp := &specdv1.TokenLogprob{Logprob: -1, Token: []byte("a")}
	if err := st.Send(&specdv1.GenerateResponse{Event: &specdv1.GenerateResponse_Chunk{Chunk: &specdv1.TokenChunk{
		TokenIds: []int32{5}, Text: "a", Logprobs: []*specdv1.TokenLogprob{lp, lp}}}}); err != nil {
		return err
	}
	return st.Send(&specdv1.GenerateResponse{Event: &specdv1.GenerateResponse_Final{Final: &specdv1.Final{
		FinishReason: specdv1.FinishReason_FINISH_REASON_LENGTH, Stats: &specdv1.Stats{CompletionTokens: 1}}}})
}

// TestGenerateLogprobsMismatch: a stream whose log-probabilities do not match its
// tokens one for one is a clear error of `specd generate --logprobs`, not a panic
// while it lists them.
func TestGenerateLogprobsMismatch(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	specdv1.RegisterGenerationServiceServer(gs, mismatchedRouter{})
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	_, stderr, code := run(t, "generate", "--addr", lis.Addr().String(), "-p", "x", "-n", "1", "--logprobs")
	if code != 1 || !strings.Contains(stderr, "2 log-probabilities for 1 token") {
		t.Errorf("exit %d: %s; want exit 1 and an error counting 2 log-probabilities for 1 token", code, stderr)
	}
}

// TestRunLogprobsEqualServices: `specd run --logprobs` (the engine alone) reports the
// same tokens and log-probabilities, bit for bit, as `specd generate --logprobs`
// through router, draft and verifier: every pass is batch-invariant.
func TestRunLogprobsEqualServices(t *testing.T) {
	addr := startUp(t)
	args := []string{"-p", "Once upon a time", "-n", "16", "--temp", "0", "--logprobs", "--top-logprobs", "2", "--json"}
	decode := func(name string, stdout string) (ids []int32, lps []tokenLogprob) {
		t.Helper()
		var res struct {
			OutputIDs []int32        `json:"output_ids"`
			Logprobs  []tokenLogprob `json:"logprobs"`
		}
		if err := json.Unmarshal([]byte(stdout), &res); err != nil {
			t.Fatalf("%s: %v: %s", name, err, stdout)
		}
		return res.OutputIDs, res.Logprobs
	}
	stdout, stderr, code := run(t, append([]string{"run"}, args...)...)
	if code != 0 {
		t.Fatalf("run: exit %d: %s", code, stderr)
	}
	runIDs, runLPs := decode("run", stdout)
	stdout, stderr, code = run(t, append([]string{"generate", "--addr", addr}, args...)...)
	if code != 0 {
		t.Fatalf("generate: exit %d: %s", code, stderr)
	}
	genIDs, genLPs := decode("generate", stdout)
	if len(runLPs) != 16 || !slices.Equal(runIDs, genIDs) || !slices.EqualFunc(runLPs, genLPs, func(a, b tokenLogprob) bool {
		return a.Token == b.Token && a.Logprob == b.Logprob && slices.EqualFunc(a.Top, b.Top, func(x, y topLogprobJS) bool {
			return x.ID == y.ID && x.Token == y.Token && x.Logprob == y.Logprob
		})
	}) {
		t.Errorf("run: %v %+v\ngenerate: %v %+v", runIDs, runLPs, genIDs, genLPs)
	}
	if _, stderr, code := run(t, "run", "-p", "x", "--top-logprobs", "21", "--logprobs"); code != 2 || !strings.Contains(stderr, "at most 20") {
		t.Errorf("run --top-logprobs 21: exit %d: %s", code, stderr)
	}
}
