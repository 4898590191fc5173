package serve_test

import (
	"context"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/specd-dev/specd/ggml"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/services"
)

// TestAPIDoesWhatTheProtoSays checks the public API against the comments of
// proto/specd/v1/generation.proto, one documented promise per subtest.
func TestAPIDoesWhatTheProtoSays(t *testing.T) {
	rtel, _ := recordSpans(t, "specd-router")
	s := startStackWith(t, stackOptions{rtel: rtel})
	ctx := context.Background()
	m := s.target

	t.Run("max_tokens 0 runs to the context", func(t *testing.T) {
		resp, err := s.client.Complete(ctx, &specdv1.GenerateRequest{Prompt: "Once upon a time", Speculation: &specdv1.SpeculationOptions{Disabled: true}})
		if err != nil {
			t.Fatal(err)
		}
		n := len(resp.GetPromptIds()) + len(resp.GetTokenIds())
		if resp.GetFinishReason() != specdv1.FinishReason_FINISH_REASON_CONTEXT || n != m.Context {
			t.Errorf("finish %v with %d prompt and %d completion tokens, want FINISH_REASON_CONTEXT at the context of %d",
				resp.GetFinishReason(), len(resp.GetPromptIds()), len(resp.GetTokenIds()), m.Context)
		}
	})

	t.Run("Complete returns prompt_ids", func(t *testing.T) {
		text := "The quick brown fox"
		resp, err := s.client.Complete(ctx, &specdv1.GenerateRequest{Prompt: text, MaxTokens: 4})
		if err != nil {
			t.Fatal(err)
		}
		if want := m.Tok.Encode(text, true); !slices.Equal(resp.GetPromptIds(), want) {
			t.Errorf("prompt_ids %v, want %v", resp.GetPromptIds(), want)
		}
		ids := m.Tok.Encode("Hello there", true)
		resp, err = s.client.Complete(ctx, &specdv1.GenerateRequest{PromptIds: ids, MaxTokens: 4})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(resp.GetPromptIds(), ids) {
			t.Errorf("with prompt_ids given: prompt_ids %v, want them back", resp.GetPromptIds())
		}
	})

	t.Run("unknown model is NOT_FOUND", func(t *testing.T) {
		req := &specdv1.GenerateRequest{Prompt: "x", MaxTokens: 4, Model: "gpt-17"}
		_, err := s.generate(ctx, req)
		_, cerr := s.client.Complete(ctx, req)
		_, terr := s.client.Tokenize(ctx, &specdv1.TokenizeRequest{Model: "gpt-17", Text: "x"})
		_, derr := s.client.Detokenize(ctx, &specdv1.DetokenizeRequest{Model: "gpt-17", TokenIds: []int32{5}})
		for name, err := range map[string]error{"Generate": err, "Complete": cerr, "Tokenize": terr, "Detokenize": derr} {
			if status.Code(err) != codes.NotFound {
				t.Errorf("%s: %v, want NOT_FOUND", name, err)
			}
		}
	})

	t.Run("Detokenize inverts Tokenize", func(t *testing.T) {
		text := "Once upon a time, a cat said \"ok\"."
		tr, err := s.client.Tokenize(ctx, &specdv1.TokenizeRequest{Text: text, AddBos: true})
		if err != nil {
			t.Fatal(err)
		}
		ids := append(tr.GetTokenIds(), m.Tok.EOS())
		for _, tc := range []struct {
			skip bool
			want string
		}{{true, text}, {false, "<s> " + text + "</s>"}} {
			dr, err := s.client.Detokenize(ctx, &specdv1.DetokenizeRequest{Model: m.Name, TokenIds: ids, SkipSpecialTokens: tc.skip})
			if err != nil || dr.GetText() != tc.want {
				t.Errorf("Detokenize(%v, skip_special_tokens %v) = %q, %v; want %q", ids, tc.skip, dr.GetText(), err, tc.want)
			}
		}
		_, err = s.client.Detokenize(ctx, &specdv1.DetokenizeRequest{TokenIds: []int32{3, int32(m.Vocab)}})
		if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), "token_ids: id 4096 at index 1 ") {
			t.Errorf("Detokenize of an id past the vocabulary: %v, want INVALID_ARGUMENT naming token_ids and the id", err)
		}
	})

	t.Run("ListModels reports the models", func(t *testing.T) {
		resp, err := s.client.ListModels(ctx, &specdv1.ListModelsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var v *specdv1.ModelInfo
		for _, mi := range resp.GetModels() {
			if mi.GetRole() == "verifier" {
				v = mi
			}
			// One spelling of quantization: ggml's, as the command line takes it.
			if q, err := ggml.ParseType(mi.GetQuantization()); err != nil || q.String() != mi.GetQuantization() {
				t.Errorf("%s: quantization %q is not spelled as %q", mi.GetName(), mi.GetQuantization(), q)
			}
		}
		if v == nil {
			t.Fatalf("no verifier in %v", resp.GetModels())
		}
		want := &specdv1.ModelInfo{Name: m.Name, Role: "verifier", Architecture: m.Arch, Quantization: m.Quant.String(),
			ContextLength: uint32(m.Context), VocabSize: uint32(m.Vocab), TokenizerHash: m.Tok.Hash(), Parameters: m.Parameters}
		if !proto.Equal(v, want) || m.Parameters == 0 || m.Vocab == 0 {
			t.Errorf("verifier model %v, want %v", v, want)
		}
	})

	t.Run("invalid UTF-8 is INVALID_ARGUMENT naming the field", func(t *testing.T) {
		// The Go client will not marshal such a string; send the bytes themselves. A
		// JavaScript client sends them for a string with a lone surrogate (protobufjs
		// writes it as the three bytes ED A0 80), as a string cut in the middle of an
		// emoji is: the error names the field that holds it, also in the BadRequest
		// detail, as for any other bad field.
		message := func(role, content string) []byte {
			m := protowire.AppendTag(nil, 1, protowire.BytesType)
			m = protowire.AppendString(m, role)
			m = protowire.AppendTag(m, 2, protowire.BytesType)
			return protowire.AppendString(m, content)
		}
		maxTokens := protowire.AppendVarint(protowire.AppendTag(nil, 4, protowire.VarintType), 4)
		prompt := protowire.AppendString(protowire.AppendTag(nil, 2, protowire.BytesType), "Once upon a \xff time")
		var chat []byte
		for _, m := range [][]byte{message("user", "Hi"), message("assistant", "a \xed\xa0\x80 b")} {
			chat = protowire.AppendBytes(protowire.AppendTag(chat, 10, protowire.BytesType), m)
		}
		cc, err := services.Dial(s.router, grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{})))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		for _, tc := range []struct {
			msg   []byte
			field string
		}{
			{append(prompt, maxTokens...), "prompt"},
			{append(chat, maxTokens...), "messages[1].content"},
		} {
			var out []byte
			uerr := cc.Invoke(ctx, "/specd.v1.GenerationService/Complete", tc.msg, &out)
			st, err := cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/specd.v1.GenerationService/Generate")
			if err != nil {
				t.Fatal(err)
			}
			if err := st.SendMsg(tc.msg); err != nil {
				t.Fatal(err)
			}
			st.CloseSend()
			serr := st.RecvMsg(&out)
			for name, err := range map[string]error{"Complete": uerr, "Generate": serr} {
				s, _ := status.FromError(err)
				var field string
				for _, d := range s.Details() {
					if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) == 1 {
						field = br.GetFieldViolations()[0].GetField()
					}
				}
				if s.Code() != codes.InvalidArgument || !strings.HasPrefix(s.Message(), tc.field+": ") || field != tc.field {
					t.Errorf("%s with invalid UTF-8 in %s: %v (BadRequest field %q), want INVALID_ARGUMENT naming %[2]s", name, tc.field, err, field)
				}
			}
		}
	})

	t.Run("client cancels count as CANCELLED", func(t *testing.T) {
		const n = 4
		for range n {
			cctx, cancel := context.WithCancel(ctx)
			st, err := s.client.Generate(cctx, request("Once upon a time there was a", 400, 0, 0, 4))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.Recv(); err != nil {
				t.Fatal(err)
			}
			cancel()
		}
		want := `specd_requests_total{code="Canceled",model="` + m.Name + `"} ` + "4"
		var got string
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			rec := httptest.NewRecorder()
			rtel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
			got = ""
			for _, l := range strings.Split(rec.Body.String(), "\n") {
				// NotFound: the unknown-model subtest's requests, refused before routing.
				if strings.HasPrefix(l, "specd_requests_total{") && !strings.Contains(l, `code="OK"`) && !strings.Contains(l, `code="NotFound"`) {
					got += l + "\n"
				}
			}
			if strings.TrimSpace(got) == want {
				return
			}
		}
		t.Errorf("after %d cancelled requests the router counts\n%swant only %s", n, got, want)
	})
}

// rawCodec sends and receives messages as the bytes they are.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.([]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

// TestStatsNameTheVerifierAsReached checks the proto's promise on Endpoint.address,
// "network address the replica was reached at": the address the router dialled, not
// the one the verifier listens on (a verifier on 0.0.0.0:7071 reported "[::]:7071",
// which names no host).
func TestStatsNameTheVerifierAsReached(t *testing.T) {
	s := startStackWith(t, stackOptions{byName: true})
	ctx := context.Background()
	resp, err := s.client.Complete(ctx, &specdv1.GenerateRequest{Prompt: "Once upon a time", MaxTokens: 4})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetStats().GetVerifier().GetAddress(); got != s.verifier {
		t.Errorf("Complete: stats.verifier.address = %q, want %q, the address the router reached it at", got, s.verifier)
	}
	res, err := s.generate(ctx, &specdv1.GenerateRequest{Prompt: "Once upon a time", MaxTokens: 4})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.final.GetStats().GetVerifier().GetAddress(); got != s.verifier {
		t.Errorf("Generate: stats.verifier.address = %q, want %q", got, s.verifier)
	}
}

// TestRefusedRequestsAreCounted: specd_requests_total counts every finished request by
// its code, those the router refuses before routing (bad input, an unknown model) too,
// so that an operator sees a client's stream of INVALID_ARGUMENT. They have no verifier,
// so their model label is empty: a client's model names must not become series.
func TestRefusedRequestsAreCounted(t *testing.T) {
	rtel, _ := recordSpans(t, "specd-router")
	s := startStackWith(t, stackOptions{rtel: rtel})
	ctx := context.Background()
	bad := &specdv1.GenerateRequest{Prompt: "x", Sampling: &specdv1.SamplingParams{Temperature: -1}}
	unknown := &specdv1.GenerateRequest{Prompt: "x", Model: "gpt-17"}
	for _, req := range []*specdv1.GenerateRequest{bad, unknown} {
		_, gerr := s.generate(ctx, req)
		_, cerr := s.client.Complete(ctx, req)
		if gerr == nil || cerr == nil {
			t.Fatalf("%v: Generate %v, Complete %v; want both refused", req, gerr, cerr)
		}
	}
	rec := httptest.NewRecorder()
	rtel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{
		`specd_requests_total{code="InvalidArgument",model=""} 2`,
		`specd_requests_total{code="NotFound",model=""} 2`,
	} {
		if !strings.Contains(rec.Body.String(), want+"\n") {
			t.Errorf("/metrics lacks %s; its specd_requests_total:\n%s", want, grepLines(rec.Body.String(), "specd_requests_total{"))
		}
	}
}

// grepLines returns the lines of text that start with prefix.
func grepLines(text, prefix string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
