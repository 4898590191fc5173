package openaihttp_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/specd-dev/specd/generate"
	"github.com/specd-dev/specd/internal/testmodels"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/tokenizer"
	"github.com/specd-dev/specd/tokenizer/ggufvocab"
)

// offsetCase is one completion of TestTextOffsetInText: a prompt (text, or token ids)
// and the tokens generated after it.
type offsetCase struct {
	name  string
	text  string  // a text prompt ("": ids)
	ids   []int32 // the prompt's tokens
	gen   []int32 // the generated tokens
	whole string  // text the generation must show whole ("": none)
}

// TestTextOffsetInText: over real vocabularies — specd's SentencePiece one (BOS first,
// the dummy-prefix space, byte fallback) and byte-level BPE ones (Llama 3's, Qwen2's,
// GPT-2's, DeepSeek Coder's, StarCoder's) and Phi-3's SentencePiece one — every token
// of logprobs.tokens is at its text_offset in the returned text:
// text[offset:offset+len(token)] == token, in characters, as vLLM's offsets index the
// text; also for characters split over tokens (CJK and emoji in byte pieces or byte
// fallback), control tokens amid a generation (which the text does not show) and amid
// an echoed prompt of token ids (which the echo spells), the BOS and dummy-prefix
// space of an echoed text prompt, and the end token; the tokens of a generation,
// concatenated, are its text, and streamed or not the arrays are the same. The
// log-probabilities come from the functions the verifier builds them with.
func TestTextOffsetInText(t *testing.T) {
	vocabs := []string{
		testmodels.ForTest(t, "specd-target-q8_0.gguf"),
		filepath.Join(testmodels.VocabDir(t), "ggml-vocab-llama-bpe.gguf"),
		filepath.Join(testmodels.VocabDir(t), "ggml-vocab-qwen2.gguf"),
		filepath.Join(testmodels.VocabDir(t), "ggml-vocab-gpt-2.gguf"),
		filepath.Join(testmodels.VocabDir(t), "ggml-vocab-deepseek-coder.gguf"),
		filepath.Join(testmodels.VocabDir(t), "ggml-vocab-starcoder.gguf"),
		filepath.Join(testmodels.VocabDir(t), "ggml-vocab-phi-3.gguf"),
		filepath.Join(testmodels.VocabDir(t), "ggml-vocab-llama-spm.gguf"),
	}
	var mu sync.Mutex
	var cur *specdv1.CompleteResponse
	base := serveStub(t, &stub{
		complete: func(context.Context, *specdv1.GenerateRequest) (*specdv1.CompleteResponse, error) {
			mu.Lock()
			defer mu.Unlock()
			return cur, nil
		},
		generate: func(r *specdv1.GenerateRequest, st specdv1.GenerationService_GenerateServer) error {
			mu.Lock()
			res := cur
			mu.Unlock()
			return streamResponse(st, res)
		},
	}, 0)
	for _, path := range vocabs {
		tok, err := ggufvocab.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		const uni = "Once upon a time, 東京 😀 — ¿qué?"
		encode := func(s string) []int32 { return tok.Encode(s, false) }
		cases := []offsetCase{
			{name: "text prompt", text: "Once upon a time", ids: tok.Prompt("Once upon a time"), gen: encode("東京 😀 end"), whole: "東京 😀 end"},
			{name: "text prompt of split characters", text: uni, ids: tok.Prompt(uni), gen: encode(" 你好")},
			{name: "ids cut inside a character", ids: slices.Concat(tok.Prompt("x"), encode("😀")[:1]), gen: encode(" y")},
		}
		// A control token that ends no generation, amid the tokens of a character
		// (GPT-2's vocabulary has none but its end token).
		if ctrl := controlToken(tok); ctrl >= 0 {
			gen := encode("東京 x")
			mid := slices.Insert(slices.Clone(gen), len(gen)/2, ctrl)
			cases = append(cases,
				offsetCase{name: "control amid the generation", text: "Hi", ids: tok.Prompt("Hi"), gen: mid, whole: "東京 x"},
				offsetCase{name: "ids with a control amid them", ids: slices.Concat(tok.Prompt("A"), mid), gen: encode(" c 😀")})
		}
		for _, tc := range cases {
			t.Run(filepath.Base(path)+"/"+tc.name, func(t *testing.T) {
				res := completeLike(tok, tc.ids, tc.gen)
				if !strings.Contains(res.GetText(), tc.whole) {
					t.Fatalf("the generation decodes to %q, want %q in it", res.GetText(), tc.whole)
				}
				mu.Lock()
				cur = res
				mu.Unlock()
				for _, echo := range []bool{false, true} {
					body := map[string]any{"model": "big", "logprobs": 2, "max_tokens": len(tc.gen), "echo": echo}
					if body["prompt"] = tc.text; tc.text == "" {
						body["prompt"] = tc.ids
					}
					var arrays []string
					for _, stream := range []bool{false, true} {
						body["stream"] = stream
						text, lp := postLogprobs(t, base, body)
						what := fmt.Sprintf("echo %v, stream %v", echo, stream)
						checkInText(t, what, text, lp)
						if !echo && strings.Join(lp.Tokens, "") != res.GetText() {
							t.Errorf("%s: the tokens spell %q, the text is %q", what, strings.Join(lp.Tokens, ""), res.GetText())
						}
						b, _ := json.Marshal(lp)
						arrays = append(arrays, string(b))
					}
					if arrays[0] != arrays[1] {
						t.Errorf("echo %v: streamed %s, unstreamed %s", echo, arrays[1], arrays[0])
					}
				}
			})
		}
	}
}

// controlToken is a control token of tok that ends no generation (-1: none).
func controlToken(tok *tokenizer.Tokenizer) int32 {
	for id := range int32(tok.VocabSize()) {
		if tok.Type(id) == tokenizer.TypeControl && !slices.Contains(tok.EOG(), id) && id != tok.BOS() {
			return id
		}
	}
	if !slices.Contains(tok.EOG(), tok.BOS()) && tok.BOS() >= 0 {
		return tok.BOS()
	}
	return -1
}

// completeLike is the CompleteResponse a verifier gives for prompt ids and generated
// tokens gen (uniform logits, so the two likeliest are ids 0 and 1), its
// log-probabilities built as the verifier builds them: the prompt's with a decoder
// over the prompt, the generation's with the output before each token is pushed.
func completeLike(tok *tokenizer.Tokenizer, ids, gen []int32) *specdv1.CompleteResponse {
	logits := make([]float32, tok.VocabSize())
	dec := tok.NewDecoder(nil)
	prompt := []*generate.Logprobs{{Bytes: tok.TokenBytes(ids[0]), Text: dec.Next(ids[0])}}
	for _, id := range ids[1:] {
		prompt = append(prompt, generate.NewLogprobs(logits, id, 2, tok, dec))
		dec.Next(id)
	}
	out := generate.NewOutput(tok, ids, generate.Limits{MaxTokens: len(gen), Context: 1 << 20, End: tok.EOG()})
	res := &specdv1.CompleteResponse{PromptIds: ids, FinishReason: specdv1.FinishReason_FINISH_REASON_LENGTH,
		Stats: &specdv1.Stats{PromptTokens: uint32(len(ids)), CompletionTokens: uint32(len(gen))}}
	for _, id := range gen {
		res.Logprobs = append(res.Logprobs, services.LogprobsToProto(generate.NewLogprobs(logits, id, 2, tok, out)))
		out.Push(id)
		res.TokenIds = append(res.TokenIds, id)
	}
	res.Text = out.Text()
	for _, lp := range prompt {
		res.PromptLogprobs = append(res.PromptLogprobs, services.LogprobsToProto(lp))
	}
	return res
}

// streamResponse streams res as a router would: the prompt's log-probabilities in two
// pieces, then the tokens one chunk each with the text each adds (the text a decoder
// holds back arriving later), then the end.
func streamResponse(st specdv1.GenerationService_GenerateServer, res *specdv1.CompleteResponse) error {
	send := func(c *specdv1.TokenChunk) error {
		return st.Send(&specdv1.GenerateResponse{Event: &specdv1.GenerateResponse_Chunk{Chunk: c}})
	}
	if p := res.GetPromptLogprobs(); len(p) > 0 {
		h := (len(p) + 1) / 2
		if err := send(&specdv1.TokenChunk{PromptLogprobs: p[:h]}); err != nil {
			return err
		}
		if h < len(p) {
			if err := send(&specdv1.TokenChunk{PromptLogprobs: p[h:]}); err != nil {
				return err
			}
		}
	}
	shown := 0
	for i, id := range res.GetTokenIds() {
		lp := res.GetLogprobs()[i]
		text := ""
		if n := shown + len(lp.GetText()); n <= len(res.GetText()) {
			text, shown = res.GetText()[shown:n], n
		}
		if err := send(&specdv1.TokenChunk{TokenIds: []int32{id}, Text: text, Logprobs: []*specdv1.TokenLogprob{lp}}); err != nil {
			return err
		}
	}
	if shown < len(res.GetText()) {
		if err := send(&specdv1.TokenChunk{Text: res.GetText()[shown:]}); err != nil {
			return err
		}
	}
	return st.Send(&specdv1.GenerateResponse{Event: &specdv1.GenerateResponse_Final{Final: &specdv1.Final{
		FinishReason: res.GetFinishReason(), Stats: res.GetStats()}}})
}

// offsetLogprobs are a choice's tokens and where they start, as the JSON reads.
type offsetLogprobs struct {
	Tokens      []string             `json:"tokens"`
	TextOffset  []int                `json:"text_offset"`
	TopLogprobs []map[string]float64 `json:"top_logprobs"`
}

// postLogprobs posts a completion and returns its one choice's text and logprobs,
// streamed chunks merged.
func postLogprobs(t *testing.T, base string, body map[string]any) (string, offsetLogprobs) {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(base+"/completions", "application/json", strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	type choice struct {
		Text     string          `json:"text"`
		Logprobs *offsetLogprobs `json:"logprobs"`
	}
	var text string
	var lp offsetLogprobs
	add := func(ch choice) {
		text += ch.Text
		if ch.Logprobs != nil {
			lp.Tokens = append(lp.Tokens, ch.Logprobs.Tokens...)
			lp.TextOffset = append(lp.TextOffset, ch.Logprobs.TextOffset...)
			lp.TopLogprobs = append(lp.TopLogprobs, ch.Logprobs.TopLogprobs...)
		}
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s", resp.Status)
	}
	if body["stream"] != true {
		var out struct{ Choices []choice }
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || len(out.Choices) != 1 {
			t.Fatalf("response: %v, %d choices", err, len(out.Choices))
		}
		add(out.Choices[0])
		return text, lp
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok || line == "[DONE]" {
			continue
		}
		var c struct{ Choices []choice }
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			t.Fatalf("chunk %s: %v", line, err)
		}
		for _, ch := range c.Choices {
			add(ch)
		}
	}
	return text, lp
}

// checkInText checks that each token is at its offset in text, the offsets in order,
// and each chosen token among its top_logprobs' keys (or, null, an echo's first).
func checkInText(t *testing.T, what, text string, lp offsetLogprobs) {
	t.Helper()
	r := []rune(text)
	if len(lp.Tokens) == 0 || len(lp.TextOffset) != len(lp.Tokens) || len(lp.TopLogprobs) != len(lp.Tokens) {
		t.Fatalf("%s: %d tokens, %d offsets, %d tops", what, len(lp.Tokens), len(lp.TextOffset), len(lp.TopLogprobs))
	}
	for i, tok := range lp.Tokens {
		off, tr := lp.TextOffset[i], []rune(tok)
		if off < 0 || off+len(tr) > len(r) || string(r[off:off+len(tr)]) != tok {
			t.Errorf("%s: token %d %q is not at its text_offset %d in %q", what, i, tok, off, text)
		}
		if i > 0 && off < lp.TextOffset[i-1] {
			t.Errorf("%s: token %d: text_offset %d before %d", what, i, off, lp.TextOffset[i-1])
		}
		if _, ok := lp.TopLogprobs[i][tok]; !ok && lp.TopLogprobs[i] != nil {
			t.Errorf("%s: token %d %q is not among its top_logprobs %v", what, i, tok, lp.TopLogprobs[i])
		}
	}
}
