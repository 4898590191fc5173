package testmodels

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/specd-dev/specd/gguf"
)

// ServerPrompts is testdata/llama-server-b4748-prompts.json: the prompt ids llama.cpp
// b4748's llama-server gave for text prompts (POST /completion) and conversations (POST
// /v1/chat/completions, --jinja) on shared models with edited tokenizer metadata, read
// from its -v log, and llama-tokenize's for the text prompts. TestLlamaServerPrompts in
// this package regenerates it.
type ServerPrompts struct {
	Note     string          `json:"note"`
	Variants []ServerVariant `json:"variants"`
}

// ServerVariant is one model file as llama-server ran it: a shared model with some
// tokenizer metadata set, and the prompts it tokenized.
type ServerVariant struct {
	Name  string `json:"name"`
	Model string `json:"model"` // a shared model file name
	// AddBOS and AddEOS set tokenizer.ggml.add_bos_token and add_eos_token; nil keeps the
	// file's value. ChatTemplate sets tokenizer.chat_template unless empty.
	AddBOS       *bool        `json:"add_bos_token,omitempty"`
	AddEOS       *bool        `json:"add_eos_token,omitempty"`
	ChatTemplate string       `json:"chat_template,omitempty"`
	Completions  []ServerText `json:"completions"`
	Chats        []ServerChat `json:"chats"`
}

// ServerText is a text prompt and its ids: llama-server's, and llama-tokenize's on the
// same file (without --no-bos), which adds BOS and EOS only when the vocabulary asks for
// BOS (specd tokenize --bos does the same).
type ServerText struct {
	Prompt      string  `json:"prompt"`
	IDs         []int32 `json:"ids"`
	TokenizeIDs []int32 `json:"llama_tokenize_ids"`
}

// ServerChat is a conversation and the ids of its rendering.
type ServerChat struct {
	Messages []ServerMessage `json:"messages"`
	IDs      []int32         `json:"ids"`
}

// ServerMessage is one message of a conversation, as the OpenAI API spells it. (Package
// chat's tests use this package, so it cannot use chat.Message.)
type ServerMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// KV is the metadata v sets on its model.
func (v ServerVariant) KV() []gguf.KV {
	var kv []gguf.KV
	if v.AddBOS != nil {
		kv = append(kv, gguf.KV{Key: "tokenizer.ggml.add_bos_token", Value: gguf.NewBool(*v.AddBOS)})
	}
	if v.AddEOS != nil {
		kv = append(kv, gguf.KV{Key: "tokenizer.ggml.add_eos_token", Value: gguf.NewBool(*v.AddEOS)})
	}
	if v.ChatTemplate != "" {
		kv = append(kv, gguf.KV{Key: "tokenizer.chat_template", Value: gguf.NewString(v.ChatTemplate)})
	}
	return kv
}

// Path writes v's model file (see WithMetadata) and returns its path; the shared file
// itself when v sets nothing.
func (v ServerVariant) Path(tb testing.TB) string {
	tb.Helper()
	if kv := v.KV(); len(kv) > 0 {
		return WithMetadata(tb, v.Model, kv...)
	}
	return ForTest(tb, v.Model)
}

// ServerPromptsFile is the path of testdata/llama-server-b4748-prompts.json.
func ServerPromptsFile() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "testdata", "llama-server-b4748-prompts.json")
}

// LlamaServerPrompts reads testdata/llama-server-b4748-prompts.json, failing the test
// when it is missing, malformed or empty.
func LlamaServerPrompts(tb testing.TB) ServerPrompts {
	tb.Helper()
	b, err := os.ReadFile(ServerPromptsFile())
	if err != nil {
		tb.Fatal(err)
	}
	var p ServerPrompts
	if err := json.Unmarshal(b, &p); err != nil {
		tb.Fatalf("%s: %v", ServerPromptsFile(), err)
	}
	if len(p.Variants) == 0 {
		tb.Fatalf("%s: no variants", ServerPromptsFile())
	}
	return p
}

// Variant returns the named variant of p, failing the test when there is none.
func (p ServerPrompts) Variant(tb testing.TB, name string) ServerVariant {
	tb.Helper()
	for _, v := range p.Variants {
		if v.Name == name {
			return v
		}
	}
	tb.Fatalf("%s: no variant %q", ServerPromptsFile(), name)
	return ServerVariant{}
}
