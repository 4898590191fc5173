package tokenizer

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

// cancelAfter is a context that is cancelled from its ok+1-th Err call on, so a test
// sees whether tokenization looks at it while it works, not only before and after.
type cancelAfter struct {
	context.Context
	ok, calls int
}

func (c *cancelAfter) Err() error {
	c.calls++
	if c.calls > c.ok {
		return context.Canceled
	}
	return nil
}

// TestTokenizeContextStops: a long text's tokenization gives up with the context's
// error when the context ends while it runs, with a SentencePiece vocabulary (between
// merges) and a byte-level BPE one (between pre-tokenized words); with the context
// alive it gives Tokenize's ids.
func TestTokenizeContextStops(t *testing.T) {
	long := strings.Repeat("Once upon a time, there was a cat who liked to sit in the sun. ", 4000)
	for _, name := range []string{"specd-target-q8_0", "arch-llama3-f16"} {
		t.Run(name, func(t *testing.T) {
			tok := loadTokenizer(t, name)
			for _, special := range []bool{false, true} {
				// One look before, one while it works, then cancelled: a tokenizer
				// that looked only before and after would finish.
				ctx := &cancelAfter{Context: context.Background(), ok: 2}
				ids, err := tok.TokenizeContext(ctx, long, true, special)
				if !errors.Is(err, context.Canceled) || ids != nil {
					t.Errorf("TokenizeContext(cancelled while it works, special %v) = %d ids, %v; want nil, context.Canceled", special, len(ids), err)
				}
				if ctx.calls < 3 {
					t.Errorf("TokenizeContext looked at its context %d times, want it to look while it works", ctx.calls)
				}
				short := long[:5000]
				ids, err = tok.TokenizeContext(context.Background(), short, true, special)
				if want := tok.Tokenize(short, true, special); err != nil || !slices.Equal(ids, want) {
					t.Errorf("TokenizeContext(alive, special %v) = %d ids, %v; want Tokenize's %d", special, len(ids), err, len(want))
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if _, err := tok.TokenizeContext(ctx, long, false, false); !errors.Is(err, context.Canceled) {
				t.Errorf("TokenizeContext(cancelled before) = %v, want context.Canceled", err)
			}
		})
	}
}
