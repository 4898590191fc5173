package llama2c_test

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/specd-dev/specd/gguf"
	"github.com/specd-dev/specd/internal/testmodels"
	"github.com/specd-dev/specd/llama2c"
)

// TestTok512 reads stories260K's tokenizer and checks it against the vocabulary in the
// GGUF conversion: the same scores, and the same tokens once SentencePiece's "▁" is
// written as the space llama2.c's export writes, except the control tokens, which
// llama2.c spells "\n<s>\n" and "\n</s>\n".
func TestTok512(t *testing.T) {
	v, err := llama2c.ReadTokenizer(testmodels.ForTest(t, "tok512.bin"), 512)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Tokens) != 512 || len(v.Scores) != 512 || v.MaxTokenLen != 7 {
		t.Fatalf("ReadTokenizer = %d tokens, %d scores, max length %d, want 512, 512, 7", len(v.Tokens), len(v.Scores), v.MaxTokenLen)
	}
	for id, want := range map[int]string{0: "<unk>", 1: "\n<s>\n", 2: "\n</s>\n", 3: "<0x00>", 510: "~"} {
		if v.Tokens[id] != want {
			t.Errorf("Tokens[%d] = %q, want %q", id, v.Tokens[id], want)
		}
	}

	g, err := gguf.Open(testmodels.ForTest(t, "stories260K-f32.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	tokens, err := g.Strings("tokenizer.ggml.tokens")
	if err != nil {
		t.Fatal(err)
	}
	scores, err := g.Float32s("tokenizer.ggml.scores")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(scores, v.Scores) {
		t.Error("tok512.bin scores differ from the GGUF scores")
	}
	for id := 3; id < len(tokens); id++ {
		if want := strings.ReplaceAll(tokens[id], "\u2581", " "); v.Tokens[id] != want {
			t.Errorf("Tokens[%d] = %q, GGUF has %q", id, v.Tokens[id], tokens[id])
		}
	}
}

func TestParseTokenizer(t *testing.T) {
	toks := []string{"<unk>", "a", "", "\xe2\x80\x8a"}
	scores := []float32{0, -1, -2, float32(math.Inf(-1))}
	good := tokenizer(5, toks, scores)
	v, err := llama2c.ParseTokenizer(good, 4)
	if err != nil {
		t.Fatal(err)
	}
	want := &llama2c.Vocab{Tokens: toks, Scores: scores, MaxTokenLen: 5}
	if !reflect.DeepEqual(v, want) {
		t.Errorf("ParseTokenizer = %+v, want %+v", v, want)
	}

	negLen := tokenizer(5, toks, scores)
	copy(negLen[4+4:], []byte{0xff, 0xff, 0xff, 0xff}) // token 0's length = -1
	for _, tc := range []struct {
		name    string
		data    []byte
		vocab   int
		want    error
		mention string
	}{
		{"empty", nil, 4, llama2c.ErrTruncated, "shorter than max_token_length"},
		{"vocab too large for the file", good, math.MaxInt32, llama2c.ErrTruncated, "cannot hold 2147483647 tokens"},
		{"one token short", good, 5, llama2c.ErrTruncated, "token 4 at byte"},
		{"cut in a token", good[:len(good)-1], 4, llama2c.ErrTruncated, "token 3 at byte 34: length 3, 2 bytes left"},
		{"more tokens than vocab", good, 3, llama2c.ErrTrailingData, "vocabulary larger than 3"},
		{"negative max length", tokenizer(-1, toks, scores), 4, llama2c.ErrMalformed, "max_token_length = -1"},
		{"token longer than max", tokenizer(4, toks, scores), 4, llama2c.ErrMalformed, "token 0 at byte 4: length 5 exceeds max_token_length 4"},
		{"negative token length", negLen, 4, llama2c.ErrMalformed, "token 0 at byte 4: length -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := llama2c.ParseTokenizer(tc.data, tc.vocab)
			if !errors.Is(err, tc.want) {
				t.Fatalf("ParseTokenizer error = %v, want %v", err, tc.want)
			}
			if v != nil {
				t.Error("ParseTokenizer returned a Vocab with an error")
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("ParseTokenizer error = %q, want it to mention %q", err, tc.mention)
			}
		})
	}
	for _, n := range []int{0, -1} {
		if _, err := llama2c.ParseTokenizer(good, n); err == nil {
			t.Errorf("ParseTokenizer(vocab size %d) succeeded, want an error", n)
		}
	}
	for n := range len(good) {
		if _, err := llama2c.ParseTokenizer(good[:n], 4); !errors.Is(err, llama2c.ErrTruncated) {
			t.Fatalf("ParseTokenizer(first %d of %d bytes) error = %v, want ErrTruncated", n, len(good), err)
		}
	}
}
