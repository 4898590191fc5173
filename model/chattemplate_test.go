package model_test

import (
	"errors"
	"testing"

	"github.com/specd-dev/specd/gguf"
	"github.com/specd-dev/specd/internal/testmodels"
	"github.com/specd-dev/specd/model"
)

// TestChatTemplate: Load reads tokenizer.chat_template when the file has one, leaves it
// empty when it has none, and refuses one of the wrong type.
func TestChatTemplate(t *testing.T) {
	const src = "{% for m in messages %}{{ m.content }}{% endfor %}"
	for _, tc := range []struct {
		name string
		kv   []gguf.KV
		want string
		err  error
	}{
		{"none", nil, "", nil},
		{"string", []gguf.KV{{Key: "tokenizer.chat_template", Value: gguf.NewString(src)}}, src, nil},
		{"wrong type", []gguf.KV{{Key: "tokenizer.chat_template", Value: gguf.NewUint32(7)}}, "", model.ErrFormat},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := model.Load(testmodels.WithMetadata(t, "specd-draft-q8_0.gguf", tc.kv...), model.LoadOptions{})
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("Load = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if m.ChatTemplate != tc.want {
				t.Errorf("ChatTemplate = %q, want %q", m.ChatTemplate, tc.want)
			}
		})
	}
}
