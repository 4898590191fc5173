package openaihttp_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"

	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
)

// TestTextOffsetSplitCharacters: tokens and text_offset are vLLM's — each token as the
// text it adds to the completion and where that starts, in characters — also when a
// byte-level vocabulary splits a character over tokens: a token that begins a
// character shows nothing, where the character will start, and the one that completes
// it shows all of it; a byte that begins no whole character is the one U+FFFD the
// text shows for it, shown by the token after it, which tells so. Streamed or not,
// and across chunks that hold part of a character back; the chosen token's entry in
// top_logprobs shows it the same way.
func TestTextOffsetSplitCharacters(t *testing.T) {
	// "你x好�!": 你 is e4 bd a0, 好 is e5 a5 bd; e4 followed by "!" is no character.
	const whole = "你x好\ufffd!"
	toks := [][]byte{{0xe4, 0xbd}, {0xa0}, []byte("x"), {0xe5, 0xa5}, {0xbd}, {0xe4}, []byte("!")}
	texts := []string{"", "你", "x", "", "好", "", "\ufffd!"} // as the verifier's decoder shows them
	chunks := []struct {
		from, to int
		text     string
	}{{0, 1, ""}, {1, 3, "你x"}, {3, 4, ""}, {4, 5, "好"}, {5, 6, ""}, {6, 7, "\ufffd!"}}
	lps := make([]*specdv1.TokenLogprob, len(toks))
	for i, b := range toks {
		lps[i] = &specdv1.TokenLogprob{Logprob: -float32(i + 1), Token: b, Text: texts[i]}
	}
	wantOffsets := []int64{0, 0, 1, 2, 2, 3, 3}
	wantTokens := texts
	base := serveStub(t, &stub{
		generate: func(r *specdv1.GenerateRequest, st specdv1.GenerationService_GenerateServer) error {
			for _, c := range chunks {
				ids := []int32{}
				for j := c.from; j < c.to; j++ {
					ids = append(ids, int32(10+j))
				}
				if err := st.Send(&specdv1.GenerateResponse{Event: &specdv1.GenerateResponse_Chunk{Chunk: &specdv1.TokenChunk{
					TokenIds: ids, Text: c.text, Logprobs: lps[c.from:c.to]}}}); err != nil {
					return err
				}
			}
			return st.Send(&specdv1.GenerateResponse{Event: &specdv1.GenerateResponse_Final{Final: &specdv1.Final{
				FinishReason: specdv1.FinishReason_FINISH_REASON_LENGTH}}})
		},
		complete: func(context.Context, *specdv1.GenerateRequest) (*specdv1.CompleteResponse, error) {
			return &specdv1.CompleteResponse{TokenIds: []int32{10, 11, 12, 13, 14, 15, 16}, Text: whole, Logprobs: lps,
				FinishReason: specdv1.FinishReason_FINISH_REASON_LENGTH}, nil
		},
	}, 0)
	c := client(base)
	ctx := context.Background()
	params := openai.CompletionNewParams{Model: "big", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("x")},
		Logprobs: openai.Int(0)}
	check := func(name string, text string, lp openai.CompletionChoiceLogprobs) {
		t.Helper()
		if text != whole {
			t.Errorf("%s: text %q, want %q", name, text, whole)
		}
		if !slices.Equal(lp.Tokens, wantTokens) {
			t.Errorf("%s: tokens %q, want %q", name, lp.Tokens, wantTokens)
		}
		if !slices.Equal(lp.TextOffset, wantOffsets) {
			t.Errorf("%s: text_offset %v, want %v", name, lp.TextOffset, wantOffsets)
		}
		for i, off := range lp.TextOffset {
			if r, tr := []rune(text), []rune(lp.Tokens[i]); off < 0 || int(off)+len(tr) > len(r) || string(r[off:int(off)+len(tr)]) != lp.Tokens[i] {
				t.Errorf("%s: token %d %q is not at its text_offset %d in %q", name, i, lp.Tokens[i], off, text)
			}
		}
	}
	resp, err := c.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	check("completion", resp.Choices[0].Text, resp.Choices[0].Logprobs)

	st := c.Completions.NewStreaming(ctx, params)
	var merged openai.CompletionChoiceLogprobs
	var text string
	for st.Next() {
		for _, ch := range st.Current().Choices {
			text += ch.Text
			merged.Tokens = append(merged.Tokens, ch.Logprobs.Tokens...)
			merged.TextOffset = append(merged.TextOffset, ch.Logprobs.TextOffset...)
		}
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	check("streamed completion", text, merged)
}

// TestLogprobsNotFinite: a log-probability of -Inf (a token the model rules out, as a
// masked logit does) or NaN cannot be written as JSON; it reaches the client as
// -9999, the value OpenAI's API documents for a very unlikely token, instead of
// failing the response (500) or cutting the stream short.
func TestLogprobsNotFinite(t *testing.T) {
	lps := []*specdv1.TokenLogprob{
		{Logprob: -0.5, Token: []byte("a"), Text: "a", Top: []*specdv1.TopLogprob{
			{TokenId: 1, Logprob: -0.5, Token: []byte("a"), Text: "a"}, {TokenId: 2, Logprob: float32(math.Inf(-1)), Token: []byte("b"), Text: "b"}}},
		{Logprob: float32(math.NaN()), Token: []byte("c"), Text: "c"},
	}
	base := serveStub(t, &stub{
		generate: func(r *specdv1.GenerateRequest, st specdv1.GenerationService_GenerateServer) error {
			if err := st.Send(&specdv1.GenerateResponse{Event: &specdv1.GenerateResponse_Chunk{Chunk: &specdv1.TokenChunk{
				TokenIds: []int32{1, 3}, Text: "ac", Logprobs: lps}}}); err != nil {
				return err
			}
			return st.Send(&specdv1.GenerateResponse{Event: &specdv1.GenerateResponse_Final{Final: &specdv1.Final{
				FinishReason: specdv1.FinishReason_FINISH_REASON_LENGTH}}})
		},
		complete: func(context.Context, *specdv1.GenerateRequest) (*specdv1.CompleteResponse, error) {
			return &specdv1.CompleteResponse{TokenIds: []int32{1, 3}, Text: "ac", Logprobs: lps, FinishReason: specdv1.FinishReason_FINISH_REASON_LENGTH}, nil
		},
	}, 0)
	c := client(base)
	ctx := context.Background()
	const unlikely = -9999
	params := openai.CompletionNewParams{Model: "big", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("x")},
		Logprobs: openai.Int(2)}
	checkCompletion := func(name string, lp openai.CompletionChoiceLogprobs) {
		t.Helper()
		if !slices.Equal(lp.TokenLogprobs, []float64{-0.5, unlikely}) || len(lp.TopLogprobs) != 2 || lp.TopLogprobs[0]["b"] != unlikely {
			t.Errorf("%s: token_logprobs %v, top_logprobs %v; want [-0.5 %v] and b at %v", name, lp.TokenLogprobs, lp.TopLogprobs, unlikely, unlikely)
		}
	}
	resp, err := c.Completions.New(ctx, params)
	if err != nil {
		t.Fatalf("completion: %v", err)
	}
	checkCompletion("completion", resp.Choices[0].Logprobs)
	st := c.Completions.NewStreaming(ctx, params)
	var merged openai.CompletionChoiceLogprobs
	finished := false
	for st.Next() {
		for _, ch := range st.Current().Choices {
			merged.TokenLogprobs = append(merged.TokenLogprobs, ch.Logprobs.TokenLogprobs...)
			merged.TopLogprobs = append(merged.TopLogprobs, ch.Logprobs.TopLogprobs...)
			finished = finished || ch.FinishReason != ""
		}
	}
	if err := st.Err(); err != nil || !finished {
		t.Fatalf("streamed completion: err %v, finish reason seen %v", err, finished)
	}
	checkCompletion("streamed completion", merged)

	cp := openai.ChatCompletionNewParams{Model: "big", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("x")},
		Logprobs: openai.Bool(true), TopLogprobs: openai.Int(2)}
	cresp, err := c.Chat.Completions.New(ctx, cp)
	if err != nil {
		t.Fatalf("chat: %v", err)
	}
	got := cresp.Choices[0].Logprobs.Content
	if len(got) != 2 || got[1].Logprob != unlikely || len(got[0].TopLogprobs) != 2 || got[0].TopLogprobs[1].Logprob != unlikely {
		t.Errorf("chat logprobs %+v: want the NaN and -Inf as %v", got, unlikely)
	}
}

// TestEchoStreamedInPieces: a router sends a long prompt's log-probabilities in several
// chunks ahead of the tokens, and may cut a character between two of them. A streamed
// echo of a prompt of token ids spells the prompt from them as they come — holding
// back the bytes of a character a later piece completes, a byte that begins no
// character shown as one U+FFFD as the unstreamed echo shows it — with each entry once
// and the first null, and ends with the end token's entry: merged, the stream is the
// unstreamed response.
func TestEchoStreamedInPieces(t *testing.T) {
	// "<s>" then "你" split over pieces 1 and 2, then a lone e4 before "!".
	toks := [][]byte{[]byte("<s>"), []byte(" a"), {0xe4, 0xbd}, {0xa0}, []byte("b"), {0xe4}, []byte("!")}
	prompt := make([]*specdv1.TokenLogprob, len(toks))
	for i, b := range toks {
		prompt[i] = &specdv1.TokenLogprob{Logprob: -float32(i), Token: b, Top: []*specdv1.TopLogprob{{TokenId: 9, Logprob: -0.25, Token: []byte("z")}}}
	}
	prompt[0] = &specdv1.TokenLogprob{Token: toks[0]}
	pieces := [][]*specdv1.TokenLogprob{prompt[:3], prompt[3:5], prompt[5:]}
	gen := []*specdv1.TokenLogprob{{Logprob: -1.5, Token: []byte(" c")}}
	end := &specdv1.TokenLogprob{Logprob: -2.5, Token: []byte("</s>")}
	ids := []int32{1, 2, 3, 4, 5, 6, 7}
	base := serveStub(t, &stub{
		generate: func(r *specdv1.GenerateRequest, st specdv1.GenerationService_GenerateServer) error {
			if !r.GetPromptLogprobs() || len(r.GetPromptIds()) != len(ids) {
				return fmt.Errorf("request %v: want prompt_logprobs for the ids", r)
			}
			for _, p := range pieces {
				if err := st.Send(&specdv1.GenerateResponse{Event: &specdv1.GenerateResponse_Chunk{Chunk: &specdv1.TokenChunk{PromptLogprobs: p}}}); err != nil {
					return err
				}
			}
			if err := st.Send(&specdv1.GenerateResponse{Event: &specdv1.GenerateResponse_Chunk{Chunk: &specdv1.TokenChunk{
				TokenIds: []int32{8}, Text: " c", Logprobs: gen}}}); err != nil {
				return err
			}
			return st.Send(&specdv1.GenerateResponse{Event: &specdv1.GenerateResponse_Final{Final: &specdv1.Final{
				FinishReason: specdv1.FinishReason_FINISH_REASON_EOS, EndLogprobs: end, Stats: &specdv1.Stats{PromptTokens: 7, CompletionTokens: 1}}}})
		},
		complete: func(context.Context, *specdv1.GenerateRequest) (*specdv1.CompleteResponse, error) {
			return &specdv1.CompleteResponse{PromptIds: ids, TokenIds: []int32{8}, Text: " c", Logprobs: gen, PromptLogprobs: prompt, EndLogprobs: end,
				FinishReason: specdv1.FinishReason_FINISH_REASON_EOS, Stats: &specdv1.Stats{PromptTokens: 7, CompletionTokens: 1}}, nil
		},
	}, 0)
	body := `{"model":"big","prompt":[1,2,3,4,5,6,7],"echo":true,"logprobs":1,"max_tokens":4`
	resp, err := http.Post(base+"/completions", "application/json", strings.NewReader(body+"}"))
	if err != nil {
		t.Fatal(err)
	}
	var want struct {
		Choices []struct {
			Text     string          `json:"text"`
			Logprobs json.RawMessage `json:"logprobs"`
		} `json:"choices"`
	}
	err = json.NewDecoder(resp.Body).Decode(&want)
	resp.Body.Close()
	if err != nil || len(want.Choices) != 1 {
		t.Fatalf("unstreamed: %v %+v", err, want)
	}
	if w := "<s> a你b\ufffd! c"; want.Choices[0].Text != w {
		t.Fatalf("unstreamed text %q, want %q", want.Choices[0].Text, w)
	}
	resp, err = http.Post(base+"/completions", "application/json", strings.NewReader(body+`,"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var text string
	var merged struct {
		Tokens        []string             `json:"tokens"`
		TokenLogprobs []*float32           `json:"token_logprobs"`
		TopLogprobs   []map[string]float32 `json:"top_logprobs"`
		TextOffset    []int                `json:"text_offset"`
	}
	var texts []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok || line == "[DONE]" {
			continue
		}
		var c struct {
			Choices []struct {
				Text     string `json:"text"`
				Logprobs *struct {
					Tokens        []string             `json:"tokens"`
					TokenLogprobs []*float32           `json:"token_logprobs"`
					TopLogprobs   []map[string]float32 `json:"top_logprobs"`
					TextOffset    []int                `json:"text_offset"`
				} `json:"logprobs"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			t.Fatalf("chunk %s: %v", line, err)
		}
		for _, ch := range c.Choices {
			text += ch.Text
			texts = append(texts, ch.Text)
			if lp := ch.Logprobs; lp != nil {
				merged.Tokens = append(merged.Tokens, lp.Tokens...)
				merged.TokenLogprobs = append(merged.TokenLogprobs, lp.TokenLogprobs...)
				merged.TopLogprobs = append(merged.TopLogprobs, lp.TopLogprobs...)
				merged.TextOffset = append(merged.TextOffset, lp.TextOffset...)
			}
		}
	}
	if text != want.Choices[0].Text {
		t.Errorf("streamed text %q (chunks %q), want %q", text, texts, want.Choices[0].Text)
	}
	if w := []string{"<s> a", "你b", "\ufffd!", " c", ""}; !slices.Equal(texts, w) {
		t.Errorf("streamed chunks %q, want %q: the echo as its pieces spell it, then the generation", texts, w)
	}
	got, err := json.Marshal(merged)
	if err != nil {
		t.Fatal(err)
	}
	var unstreamed any
	json.Unmarshal(want.Choices[0].Logprobs, &unstreamed)
	var streamed any
	json.Unmarshal(got, &streamed)
	if gj, wj := fmt.Sprint(streamed), fmt.Sprint(unstreamed); gj != wj {
		t.Errorf("streamed logprobs %s, want the unstreamed %s", gj, wj)
	}
}
