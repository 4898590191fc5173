package sample

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestPenalize: the penalties as vLLM applies them — repetition on prompt and output
// tokens (dividing a positive logit, multiplying a negative one), then frequency per
// occurrence and presence once, on output tokens only — and no copy at all when
// nothing is penalized or nothing seen.
func TestPenalize(t *testing.T) {
	logits := []float32{2, -1, 0.5, 3, -2, 1}
	prompt := []int32{0, 1, 1}
	output := []int32{2, 2, 3, 1}
	for _, c := range []struct {
		name string
		p    Params
		want []float32
	}{
		{"off", Params{RepetitionPenalty: 1}, logits},
		{"unset", Params{}, logits},
		{"repetition", Params{RepetitionPenalty: 2}, []float32{1, -2, 0.25, 1.5, -2, 1}},
		{"frequency", Params{FrequencyPenalty: 0.5}, []float32{2, -1.5, -0.5, 2.5, -2, 1}},
		{"presence", Params{PresencePenalty: 0.25}, []float32{2, -1.25, 0.25, 2.75, -2, 1}},
		{"negative", Params{FrequencyPenalty: -1}, []float32{2, 0, 2.5, 4, -2, 1}},
		{"all", Params{RepetitionPenalty: 2, FrequencyPenalty: 0.5, PresencePenalty: 0.25}, []float32{1, -2.75, -0.999999, 0.75, -2, 1}},
	} {
		s := New(c.p)
		s.SetPrompt(prompt)
		for _, id := range output {
			s.Observe(id)
		}
		got := s.Penalize(logits)
		for i := range got {
			if math.Abs(float64(got[i]-c.want[i])) > 1e-5 {
				t.Fatalf("%s: Penalize = %v, want %v", c.name, got, c.want)
			}
		}
		if !c.p.Penalized() && &got[0] != &logits[0] {
			t.Errorf("%s: copied the logits though nothing is penalized", c.name)
		}
		if !slices.Equal(logits, []float32{2, -1, 0.5, 3, -2, 1}) {
			t.Fatalf("%s: Penalize changed its argument", c.name)
		}
	}
	// Greedy follows the penalized logits: token 3 leads until it is penalized.
	s := New(Params{PresencePenalty: 2})
	if got := s.Sample(logits, 0); got != 3 {
		t.Errorf("greedy before any output = %d, want 3", got)
	}
	s.Observe(3)
	if got := s.Sample(logits, 1); got != 0 {
		t.Errorf("greedy after 3 was generated, presence penalty 2 = %d, want 0", got)
	}
	if err := (Params{TopP: 1, RepetitionPenalty: -1}).Validate(); err == nil {
		t.Error("a negative repetition penalty passed Validate")
	}
	if err := (Params{TopP: 1, FrequencyPenalty: 2.5}).Validate(); err == nil {
		t.Error("a frequency penalty of 2.5 passed Validate")
	}
}

// TestSetHistory: a history given as a sequence — moving back as well as forward, as a
// draft's does — penalizes as the same tokens given by SetPrompt and Observe.
func TestSetHistory(t *testing.T) {
	logits := []float32{2, -1, 0.5, 3, -2, 1, 0.25, -0.5}
	p := Params{RepetitionPenalty: 1.5, FrequencyPenalty: 0.3, PresencePenalty: 0.2}
	seqs := [][]int32{{0, 1, 2, 3, 3}, {0, 1}, {0, 1, 7, 7, 7, 2}, {5}, {0, 1, 2, 3, 3}}
	prompts := []int{2, 2, 2, 0, 5}
	h := New(p)
	for i, seq := range seqs {
		h.SetHistory(seq, prompts[i])
		got := slices.Clone(h.Penalize(logits))
		ref := New(p)
		ref.SetPrompt(seq[:prompts[i]])
		for _, id := range seq[prompts[i]:] {
			ref.Observe(id)
		}
		if want := ref.Penalize(logits); !slices.Equal(got, want) {
			t.Errorf("history %v (prompt %d): %v, want %v", seq, prompts[i], got, want)
		}
	}
}

// BenchmarkPenalize times a greedy draw with penalties after a prompt of 3000 tokens
// and 300 generated, against one without, over the specd vocabulary (4096) and
// Qwen2.5's (151936): what penalties add per judged token on the engine goroutine.
//
//	go test ./sample -run '^$' -bench Penalize
func BenchmarkPenalize(b *testing.B) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, v := range []int{4096, 151936} {
		logits := make([]float32, v)
		for i := range logits {
			logits[i] = float32(r.NormFloat64() * 3)
		}
		prompt := make([]int32, 3000)
		for i := range prompt {
			prompt[i] = int32(r.IntN(v))
		}
		output := make([]int32, 300)
		for i := range output {
			output[i] = int32(r.IntN(v))
		}
		for _, c := range []struct {
			name string
			p    Params
		}{
			{"off", Params{TopP: 1}},
			{"repetition", Params{TopP: 1, RepetitionPenalty: 1.1}},
			{"frequency", Params{TopP: 1, FrequencyPenalty: 0.5}},
		} {
			s := New(c.p)
			s.SetPrompt(prompt)
			for _, id := range output {
				s.Observe(id)
			}
			b.Run(fmt.Sprintf("vocab=%d/%s", v, c.name), func(b *testing.B) {
				for b.Loop() {
					s.Sample(logits, 5)
				}
			})
		}
	}
}

// TestLogitBiasAndMinTokens: the bias is added first (then the penalties, as vLLM
// orders them); the ends are held back (-Inf) while the output is shorter than
// MinTokens, counted by Observe or set by SetHistory, and only once SetEnds names them;
// greedy and sampled draws follow; bad biases fail Validate.
func TestLogitBiasAndMinTokens(t *testing.T) {
	logits := []float32{2, -1, 0.5, 3, -2, 1}
	inf := float32(math.Inf(-1))
	s := New(Params{LogitBias: []Bias{{1, 4}, {3, -100}, {9, 50}}, RepetitionPenalty: 2})
	s.SetPrompt([]int32{1})
	if got, want := s.Penalize(logits), []float32{2, 1.5, 0.5, -97, -2, 1}; !slices.Equal(got, want) {
		t.Errorf("bias then repetition penalty: %v, want %v (id 9 is outside the vocabulary: skipped)", got, want)
	}
	if got := s.Sample(logits, 0); got != 0 {
		t.Errorf("greedy with token 3 banned = %d, want 0", got)
	}

	s = New(Params{MinTokens: 2, Temperature: 1, TopP: 1})
	if got := s.Penalize(logits); &got[0] != &logits[0] {
		t.Errorf("MinTokens without ends copied the logits: it holds nothing back")
	}
	s.SetEnds([]int32{3, 5})
	for out := range 3 {
		got := s.Penalize(logits)
		held := out < 2
		if (got[3] == inf) != held || (got[5] == inf) != held || got[0] != 2 {
			t.Errorf("after %d output tokens: %v; ends held back: %v", out, got, held)
		}
		if held {
			for pos := range 200 {
				if id := s.Sample(logits, pos); id == 3 || id == 5 {
					t.Fatalf("after %d output tokens: drew end %d at position %d", out, id, pos)
				}
			}
		}
		s.Observe(0)
	}
	s.SetHistory([]int32{7, 7, 0}, 2) // one output token: the ends are held again
	if got := s.Penalize(logits); got[3] != inf {
		t.Errorf("SetHistory to one output token: %v, want the ends held back", got)
	}

	for _, bad := range []Params{
		{TopP: 1, LogitBias: []Bias{{2, 1}, {1, 1}}},
		{TopP: 1, LogitBias: []Bias{{1, 1}, {1, 2}}},
		{TopP: 1, LogitBias: []Bias{{-1, 1}}},
		{TopP: 1, LogitBias: []Bias{{1, 100.5}}},
		{TopP: 1, LogitBias: []Bias{{1, float32(math.NaN())}}},
		{TopP: 1, LogitBias: make([]Bias, MaxLogitBiasSize+1)},
		{TopP: 1, MinTokens: -1},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", bad)
		}
	}
}
