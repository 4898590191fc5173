package tokenizer

import "strings"

// Prompt returns the ids of a prompt given as text, as every specd path that serves one
// encodes it (a verifier's text prompt, its Tokenize with add_bos, specd run): BOS first
// when the vocabulary asks for it (AddBOS), the text, then EOS when the vocabulary asks
// for that (AddEOS, tokenizer.ggml.add_eos_token). This is llama.cpp's
// llama_tokenize(text, add_special=true, parse_special=false): both decisions are made
// together, in Tokenize, for this and ChatPrompt alike.
//
// llama-server b4748 tokenizes a completion prompt the same way but with parse_special
// on; specd keeps a client's text from forging control tokens, so "</s>" in a prompt is
// three tokens of text here and EOS there. Token ids are the way to send control tokens.
func (t *Tokenizer) Prompt(text string) []int32 {
	return t.Tokenize(text, true, false)
}

// ChatPrompt returns the ids of a conversation as its chat template rendered it, as
// llama-server b4748 (with --jinja) tokenizes a rendered conversation: the text of the
// BOS token is removed from the start of rendered and that of the EOS token from its end,
// once each and whatever the vocabulary asks for, and the rest is tokenized with
// special-token text parsed (the template's markup becomes its tokens), BOS first when
// the vocabulary asks for it and EOS last when it asks for that — the same decisions as
// Prompt's.
//
// So a template that writes bos_token first gives one BOS with a vocabulary that adds it,
// and none with one that does not; a rendering that ends in eos_token ends in EOS only
// when the vocabulary adds it. BOS and EOS text elsewhere in the rendering (between
// turns) stays and becomes those tokens. Later llama.cpp releases remove the text only
// when the vocabulary adds the token back; b4748, specd's reference, always does.
func (t *Tokenizer) ChatPrompt(rendered string) []int32 {
	if t.bos >= 0 {
		rendered = strings.TrimPrefix(rendered, t.pieces[t.bos])
	}
	if t.eos >= 0 {
		rendered = strings.TrimSuffix(rendered, t.pieces[t.eos])
	}
	return t.Tokenize(rendered, true, true)
}
