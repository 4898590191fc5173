package openaihttp

import (
	"cmp"
	"math"
	"strings"
	"time"

	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
)

// finishReason maps specd's finish reasons to OpenAI's: the end-of-sequence token
// and a stop string are "stop"; max_tokens and a full context window are "length".
func finishReason(f specdv1.FinishReason) string {
	switch f {
	case specdv1.FinishReason_FINISH_REASON_LENGTH, specdv1.FinishReason_FINISH_REASON_CONTEXT:
		return "length"
	}
	return "stop"
}

// usage is the OpenAI usage of a request served with stats s.
func usage(s *specdv1.Stats) *Usage {
	ms := func(d interface{ AsDuration() time.Duration }) float64 {
		return round(float64(d.AsDuration())/float64(time.Millisecond), 3)
	}
	u := &Usage{
		PromptTokens: int(s.GetPromptTokens()), CompletionTokens: int(s.GetCompletionTokens()),
		TotalTokens:         int(s.GetPromptTokens() + s.GetCompletionTokens()),
		PromptTokensDetails: &PromptTokens{CachedTokens: int(s.GetCachedPromptTokens())},
		Specd: &SpecdUsage{
			Rounds: int(s.GetRounds()), DraftedTokens: int(s.GetDraftedTokens()), AcceptedTokens: int(s.GetAcceptedTokens()),
			AcceptanceRate: round(float64(s.GetAcceptanceRate()), 4), MeanAcceptedPerRound: round(float64(s.GetMeanAcceptedPerRound()), 4),
			LookupTokens: int(s.GetLookupTokens()), LookupAcceptedTokens: int(s.GetLookupAcceptedTokens()),
			Fallbacks: int(s.GetFallbacks()), DraftRefusals: int(s.GetDraftRefusals()), Failovers: int(s.GetFailovers()),
			Verifier: s.GetVerifier().GetAddress(), Draft: s.GetDraft().GetAddress(), DraftModel: s.GetDraft().GetModel(),
			TimeToFirstTokenMS: ms(s.GetTimeToFirstToken()), TotalMS: ms(s.GetTotalDuration()),
			QueueWaitMS: ms(s.GetQueueWait()), MeanRoundTripMS: ms(s.GetMeanRoundTrip()),
			DecodeTokensPerSecond: round(s.GetDecodeTokensPerSecond(), 1),
		},
	}
	if m := s.GetMode(); m != specdv1.VerificationMode_VERIFICATION_MODE_UNSPECIFIED {
		u.Specd.Mode = strings.ToLower(strings.TrimPrefix(m.String(), "VERIFICATION_MODE_"))
	}
	return u
}

// round rounds x to digits decimals, so that a float32 statistic reads 0.3333, not
// 0.3333333432674408.
func round(x float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(x*p) / p
}

// modelName is the model a response names: the one that served it, else the one asked for.
func modelName(c *Call, s *specdv1.Stats) string {
	return cmp.Or(s.GetVerifier().GetModel(), c.Model)
}

// completion is the whole response of a non-streamed text completion.
func completion(c *Call, id string, created int64, r *specdv1.CompleteResponse) *Completion {
	fr := finishReason(r.GetFinishReason())
	return &Completion{Head: Head{ID: id, Object: "text_completion", Created: created, Model: modelName(c, r.GetStats())},
		Choices: []CompletionChoice{{Text: r.GetText(), FinishReason: &fr}}, Usage: usage(r.GetStats())}
}

// chatCompletion is the whole response of a non-streamed chat completion.
func chatCompletion(c *Call, id string, created int64, r *specdv1.CompleteResponse) *ChatCompletion {
	return &ChatCompletion{Head: Head{ID: id, Object: "chat.completion", Created: created, Model: modelName(c, r.GetStats())},
		Choices: []ChatChoice{{Message: ChatMessage{Role: "assistant", Content: r.GetText()}, FinishReason: finishReason(r.GetFinishReason())}},
		Usage:   usage(r.GetStats())}
}

// chunker builds the chunks of one streamed response.
type chunker struct {
	chat    bool
	head    Head // the same in every chunk
	started bool // a chat stream has sent its first chunk, the one with the role
}

func newChunker(c *Call, id string, created int64) *chunker {
	k := &chunker{chat: c.Chat, head: Head{ID: id, Object: "text_completion", Created: created, Model: c.Model}}
	if c.Chat {
		k.head.Object = "chat.completion.chunk"
	}
	return k
}

// delta is a chat chunk's delta: the role goes in the first.
func (k *chunker) delta(text string) ChatDelta {
	d := ChatDelta{Content: text}
	if !k.started {
		k.started, d.Role = true, "assistant"
	}
	return d
}

// text is the chunk carrying a piece of the answer.
func (k *chunker) text(s string) any {
	if !k.chat {
		return &Completion{Head: k.head, Choices: []CompletionChoice{{Text: s}}}
	}
	return &ChatChunk{Head: k.head, Choices: []ChatChunkChoice{{Delta: k.delta(s)}}}
}

// final is the chunk with the finish reason. A stream that named no model learns here
// which one served it.
func (k *chunker) final(c *Call, f *specdv1.Final) any {
	k.head.Model = modelName(c, f.GetStats())
	fr := finishReason(f.GetFinishReason())
	if !k.chat {
		return &Completion{Head: k.head, Choices: []CompletionChoice{{FinishReason: &fr}}}
	}
	return &ChatChunk{Head: k.head, Choices: []ChatChunkChoice{{Delta: k.delta(""), FinishReason: &fr}}}
}

// usage is the last chunk of a stream that asked for usage: no choices, the usage.
func (k *chunker) usage(f *specdv1.Final) any {
	if !k.chat {
		return &Completion{Head: k.head, Choices: []CompletionChoice{}, Usage: usage(f.GetStats())}
	}
	return &ChatChunk{Head: k.head, Choices: []ChatChunkChoice{}, Usage: usage(f.GetStats())}
}
