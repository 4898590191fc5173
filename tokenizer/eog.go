package tokenizer

import "slices"

// eogTexts are the pieces llama.cpp takes to end generation, whatever their type: the
// end-of-turn markers of the chat formats in use (llama-vocab.cpp's list as of b4748).
var eogTexts = []string{
	"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>",
	"<EOT>", "_<EOT>", "<|end_of_text|>", "<end_of_utterance>",
	// Fill-in-the-middle padding, repository and file separators, which llama.cpp
	// finds by their text when the file names no fim_pad, fim_rep or fim_sep id.
	"<|fim_pad|>", "<fim-pad>", "<PAD>", "<|fim_repo|>", "<|repo_name|>", "<fim-repo>",
	"<REPO>", "<|file_sep|>",
}

// EOG returns, sorted, the ids that end generation as llama.cpp decides them: EOS, the
// eot, eom, fim_pad, fim_rep and fim_sep ids a byte-level vocabulary names, and every
// token spelled like a known end-of-turn or fill-in-the-middle marker ("<|eot_id|>",
// "<|im_end|>", "<|file_sep|>", …). A
// chat model often ends its turn with one of these rather than with EOS (Qwen2.5 stops
// at <|im_end|>, Llama 3 Instruct at <|eot_id|>).
func (t *Tokenizer) EOG() []int32 {
	var ids []int32
	if t.eos >= 0 {
		ids = append(ids, t.eos)
	}
	for _, name := range []string{"eot", "eom", "fim_pad", "fim_rep", "fim_sep"} {
		if id, ok := t.specialIDs[name]; ok {
			ids = append(ids, id)
		}
	}
	for i, p := range t.pieces {
		if slices.Contains(eogTexts, p) {
			ids = append(ids, int32(i))
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}
