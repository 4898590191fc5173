package grammar_test

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/specd-dev/specd/grammar"
	"github.com/specd-dev/specd/internal/testmodels"
	"github.com/specd-dev/specd/tokenizer/ggufvocab"
)

// TestToolCallToken: Qwen2's <tool_call> and </tool_call> are user-defined tokens, one
// each: a forced Hermes call may open and close with them, its output's text shows
// them, and control tokens (the end of a turn) stay out of the document.
func TestToolCallToken(t *testing.T) {
	tok, err := ggufvocab.Open(filepath.Join(testmodels.VocabDir(t), "ggml-vocab-qwen2.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	const open, closing, imEnd = 151657, 151658, 151645
	f := grammar.ObjectFormat().Wrapped("<tool_call>\n", "\n</tool_call>")
	m := f.Grammar(tok).NewMatcher()
	logits := make([]float32, tok.VocabSize())
	m.Mask(logits, tok.EOG())
	if math.IsInf(float64(logits[open]), -1) {
		t.Errorf("<tool_call> (%d) masked at the start of a forced call", open)
	}
	ids := append([]int32{open}, tok.Encode("\n{\"name\": \"f\", \"arguments\": {}}\n", false)...)
	m.Reset(ids)
	clear(logits)
	m.Mask(logits, tok.EOG())
	if math.IsInf(float64(logits[closing]), -1) {
		t.Errorf("</tool_call> (%d) masked at the end of a forced call", closing)
	}
	if !math.IsInf(float64(logits[imEnd]), -1) {
		t.Errorf("<|im_end|> allowed before </tool_call>")
	}
	ids = append(ids, closing)
	text := tok.Decode(ids)
	if _, whole := f.Check([]byte(text)); !whole || text[:len("<tool_call>")] != "<tool_call>" {
		t.Errorf("%v decodes to %q: whole %v", ids, text, whole)
	}
}
