// Package sample turns logits into tokens: greedy, temperature, top-k, top-p and min-p,
// with randomness drawn from a counter-based generator keyed by (seed, position, token)
// so that a seeded run does not depend on how tokens were batched, which replica ran
// them, or whether speculation was on. Sampling is by the Gumbel-max trick: the token is
// the argmax over the kept candidates of logit/T + g(seed, position, token), where g is
// standard Gumbel noise. A draft model that uses the same noise (Coupled) predicts the
// verifier's token exactly whenever the two models agree enough.
//
// The package depends only on the standard library and, on amd64, golang.org/x/sys/cpu
// to choose the AVX2 noise code (gumbel_amd64.s), which draws the same bits as the Go.
package sample

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// Params are the sampling settings of one request. The zero value is greedy decoding
// (Validate wants TopP in (0, 1]: set 1 for off).
type Params struct {
	Temperature float32 // below GreedyBelow (0 included) means greedy (argmax); must be ≥ 0
	TopK        int     // keep the K most likely tokens; 0 means off
	TopP        float32 // keep the smallest set with cumulative probability ≥ TopP; 1 means off
	MinP        float32 // drop tokens with probability < MinP × the top probability; 0 means off
	Seed        uint64
	// Penalties on tokens already seen, applied to the logits before everything else, as
	// vLLM applies them: RepetitionPenalty divides the positive logit (multiplies the
	// negative one) of every token of the prompt or the output — 1 (or 0, unset) is off;
	// then FrequencyPenalty is subtracted once for each time a token occurs in the
	// output, and PresencePenalty once if it occurs there at all — 0 is off. The tokens
	// seen are those given to the Sampler (SetPrompt, Observe).
	RepetitionPenalty, FrequencyPenalty, PresencePenalty float32
	// LogitBias is added to the logits of its ids before the penalties and the rest, as
	// OpenAI's logit_bias (and vLLM, which applies it first too): ids ascending, each
	// once, values in [-MaxLogitBias, MaxLogitBias].
	LogitBias []Bias
	// MinTokens: while the output has fewer tokens, the ids that would end it (see
	// Sampler.SetEnds) cannot be drawn, as vLLM's min_tokens. 0 is off. Under a
	// Grammar the ends are allowed once its document is whole, whatever the minimum.
	MinTokens int
	// Grammar, when not nil, limits the output to a language (package grammar, for
	// response formats): after everything above, tokens that cannot continue the output
	// in it get -Inf, and so do the ends until the output is whole. It is not part of
	// the parameters' wire form: each service builds it over its own vocabulary.
	Grammar Grammar
}

// Grammar is a constraint on the output that depends on its tokens alone. It is shared
// read-only; each output sampled under it gets its own Matcher.
type Grammar interface {
	NewMatcher() Matcher
}

// Matcher follows one output through a Grammar.
type Matcher interface {
	// Mask sets to -Inf the logits of the tokens that cannot come next; ends are the
	// ids that would end the output, allowed only where the output may end.
	Mask(logits []float32, ends []int32)
	// Allows reports whether id may come next (what Mask leaves of it), without a
	// mask of the whole vocabulary.
	Allows(id int32, ends []int32) bool
	// Advance takes the next token of the output.
	Advance(id int32)
	// Reset goes back to the start of the output and takes output.
	Reset(output []int32)
}

// Bias is one entry of Params.LogitBias.
type Bias struct {
	ID    int32
	Value float32
}

// Limits on Params.LogitBias: OpenAI's range of values, and a bound on the entries,
// which every pass applies to every position of the request.
const (
	MaxLogitBias     = 100
	MaxLogitBiasSize = 1024
)

// ErrInvalid is wrapped by Params.Validate for settings out of range.
var ErrInvalid = errors.New("invalid sampling parameter")

// ParamError is a setting out of range, named as the API names it ("top_p"). It wraps
// ErrInvalid.
type ParamError struct {
	Field string
	Msg   string
}

func (e *ParamError) Error() string { return ErrInvalid.Error() + ": " + e.Field + " " + e.Msg }
func (e *ParamError) Unwrap() error { return ErrInvalid }

// Validate checks the ranges — temperature finite and ≥ 0, top_k ≥ 0, top_p in (0, 1],
// min_p in [0, 1], repetition_penalty in [0, 100] (0: unset), frequency_penalty and
// presence_penalty in [-2, 2] — and returns a *ParamError for the first out of range. It is the
// one check of sampling settings: the public API, the CLI and the services' internal
// messages all use it.
func (p Params) Validate() error {
	bad := func(field, format string, args ...any) error {
		return &ParamError{Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	switch {
	case p.Temperature < 0 || math.IsNaN(float64(p.Temperature)) || math.IsInf(float64(p.Temperature), 0):
		return bad("temperature", "%v: must be a finite value ≥ 0", p.Temperature)
	case p.TopK < 0:
		return bad("top_k", "%d: must be ≥ 0", p.TopK)
	case !(p.TopP > 0 && p.TopP <= 1):
		return bad("top_p", "%v: must be in (0, 1] (1 is off)", p.TopP)
	case !(p.MinP >= 0 && p.MinP <= 1):
		return bad("min_p", "%v: must be in [0, 1]", p.MinP)
	case !(p.RepetitionPenalty >= 0 && p.RepetitionPenalty <= MaxRepetitionPenalty):
		return bad("repetition_penalty", "%v: must be in (0, %v] (1 is off; 0 here means unset)", p.RepetitionPenalty, MaxRepetitionPenalty)
	case !(p.FrequencyPenalty >= -2 && p.FrequencyPenalty <= 2):
		return bad("frequency_penalty", "%v: must be in [-2, 2]", p.FrequencyPenalty)
	case !(p.PresencePenalty >= -2 && p.PresencePenalty <= 2):
		return bad("presence_penalty", "%v: must be in [-2, 2]", p.PresencePenalty)
	case len(p.LogitBias) > MaxLogitBiasSize:
		return bad("logit_bias", "%d entries: at most %d", len(p.LogitBias), MaxLogitBiasSize)
	case p.MinTokens < 0:
		return bad("min_tokens", "%d: must be ≥ 0", p.MinTokens)
	}
	for i, b := range p.LogitBias {
		switch {
		case b.ID < 0:
			return bad("logit_bias", "token %d: not a token id", b.ID)
		case i > 0 && b.ID <= p.LogitBias[i-1].ID:
			return bad("logit_bias", "token %d after %d: want ids ascending, each once", b.ID, p.LogitBias[i-1].ID)
		case !(b.Value >= -MaxLogitBias && b.Value <= MaxLogitBias):
			return bad("logit_bias", "token %d: %v must be in [-%d, %d]", b.ID, b.Value, MaxLogitBias, MaxLogitBias)
		}
	}
	return nil
}

// MaxRepetitionPenalty bounds RepetitionPenalty: a divisor of 100 already leaves a
// repeated token no chance against any other.
const MaxRepetitionPenalty = 100

// GreedyBelow is the temperature below which sampling is greedy: vLLM's _SAMPLING_EPS.
// Sampling tends to the argmax as the temperature goes to 0, but computing it there
// does not: logits/T leaves the float32 range (from T ≈ |logit|/3.4e38, and for every
// logit once 1/T does, below 3e-39), and the probabilities become NaN.
const GreedyBelow = 1e-5

// Greedy reports whether p selects the argmax: a temperature below GreedyBelow.
func (p Params) Greedy() bool { return p.Temperature < GreedyBelow }

// Penalized reports whether p penalizes tokens already seen.
func (p Params) Penalized() bool {
	return p.repeats() || p.FrequencyPenalty != 0 || p.PresencePenalty != 0
}

// Shaped reports whether p changes the logits before temperature and the filters: a
// penalty, a logit bias or a minimum of tokens (a Grammar only removes tokens).
func (p Params) Shaped() bool {
	return p.Penalized() || len(p.LogitBias) > 0 || p.MinTokens > 0
}

// repeats reports whether p's RepetitionPenalty is on (neither unset nor 1).
func (p Params) repeats() bool { return p.RepetitionPenalty != 0 && p.RepetitionPenalty != 1 }

// Argmax returns the index of the largest logit; ties go to the lowest index.
func Argmax(logits []float32) int32 {
	best, bi := float32(math.Inf(-1)), 0
	for i, v := range logits {
		if v > best {
			best, bi = v, i
		}
	}
	return int32(bi)
}

// Dist is a sparse probability distribution over token ids: Probs[i] is the
// probability of IDs[i]; probabilities sum to 1.
type Dist struct {
	IDs   []int32
	Probs []float32
	// logits/T of each kept id, aligned with IDs; used by Gumbel-max.
	scaled []float32
	sorted bool // IDs are in decreasing order of probability
}

// Prob returns the probability of id (0 if it is not in the support).
func (d *Dist) Prob(id int32) float32 {
	for i, x := range d.IDs {
		if x == id {
			return d.Probs[i]
		}
	}
	return 0
}

// Sampler computes filtered distributions and draws tokens. It owns scratch buffers:
// one Sampler per goroutine.
type Sampler struct {
	P     Params
	idx   []int32
	dist  Dist
	noise []float64 // Gumbel noise of one chunk of tokens; nil until the first draw
	// The tokens the penalties look at (only kept when P.Penalized()), by id: whether it
	// is in the prompt, and how often it occurs in the output; seen lists each token of
	// either once, in the order first seen. pen is the penalized copy of the logits.
	inPrompt []bool
	count    []int32
	seen     []int32
	pen      []float32
	// out counts the output's tokens (Observe, SetHistory), and ends are the ids that
	// would end it, which P.MinTokens holds back (SetEnds).
	out  int
	ends []int32
	// match follows the output through P.Grammar (nil without one).
	match Matcher
}

// New returns a sampler for p.
func New(p Params) *Sampler {
	s := &Sampler{P: p}
	if p.Grammar != nil {
		s.match = p.Grammar.NewMatcher()
	}
	return s
}

// SetPrompt gives the sampler the prompt's tokens, which RepetitionPenalty penalizes
// (the other penalties count the output alone: without it they are not kept).
func (s *Sampler) SetPrompt(ids []int32) {
	if !s.P.repeats() {
		return
	}
	for _, id := range ids {
		if s.track(id) && !s.inPrompt[id] {
			if s.count[id] == 0 {
				s.seen = append(s.seen, id)
			}
			s.inPrompt[id] = true
		}
	}
}

// SetEnds gives the sampler the ids that end the text (generate.Limits.Ends), which
// P.MinTokens keeps from being drawn while the output is shorter. Without it the
// minimum holds nothing back: a draft leaves the verifier to refuse an early end.
func (s *Sampler) SetEnds(ids []int32) { s.ends = ids }

// Allows reports whether the grammar lets id come next (always, without one): a
// caller that proposes a token of its own (a draft's repeat lookup) checks it so.
func (s *Sampler) Allows(id int32) bool {
	return s.match == nil || s.match.Allows(id, s.ends)
}

// Observe tells the sampler that id was generated (committed to the output).
func (s *Sampler) Observe(id int32) {
	if s.match != nil {
		s.match.Advance(id)
	}
	s.count1(id)
}

// count1 counts id as an output token (for the penalties and MinTokens).
func (s *Sampler) count1(id int32) {
	s.out++
	if !s.P.Penalized() || !s.track(id) {
		return
	}
	if s.count[id] == 0 && !s.inPrompt[id] {
		s.seen = append(s.seen, id)
	}
	s.count[id]++
}

// SetHistory replaces what the penalties look at by seq: seq[:prompt] the prompt, the
// rest the output. It is for a caller whose sequence moves back as well as forward (a
// draft, which drafts ahead and rolls back): it costs a pass over seq.
func (s *Sampler) SetHistory(seq []int32, prompt int) {
	prompt = min(max(prompt, 0), len(seq))
	if s.match != nil {
		s.match.Reset(seq[prompt:])
	}
	if !s.P.Penalized() {
		s.out = len(seq) - prompt
		return
	}
	for _, id := range s.seen {
		s.inPrompt[id], s.count[id] = false, 0
	}
	s.seen, s.out = s.seen[:0], 0
	s.SetPrompt(seq[:prompt])
	for _, id := range seq[prompt:] {
		s.count1(id) // the matcher has taken them above
	}
}

// track makes room for id in the history and reports whether it is a token id.
func (s *Sampler) track(id int32) bool {
	if id < 0 {
		return false
	}
	if n := int(id) + 1; n > len(s.count) {
		n = max(n, 2*len(s.count), 1024)
		s.count = append(s.count, make([]int32, n-len(s.count))...)
		s.inPrompt = append(s.inPrompt, make([]bool, n-len(s.inPrompt))...)
	}
	return true
}

// Penalize returns the logits as every draw of the sampler sees them: the logit bias
// added, the ends held back while the output is shorter than MinTokens (-Inf), then the
// penalties applied (see Params), in vLLM's order, and last the grammar's mask. It
// returns logits itself when none of these applies, else a copy the sampler owns until
// its next call. Each token's value depends on its own logit, the parameters and the
// output so far alone.
func (s *Sampler) Penalize(logits []float32) []float32 {
	return s.penalize(logits, true)
}

// penalize is Penalize, with the grammar's mask only if mask.
func (s *Sampler) penalize(logits []float32, mask bool) []float32 {
	// Under a grammar the ends wait for the document to be whole instead: held back
	// by the minimum as well, a document whole before it would leave nothing to draw.
	hold := s.out < s.P.MinTokens && len(s.ends) > 0 && s.match == nil
	if len(s.seen) == 0 && len(s.P.LogitBias) == 0 && !hold && (s.match == nil || !mask) {
		return logits
	}
	s.pen = append(s.pen[:0], logits...)
	for _, b := range s.P.LogitBias {
		if int(b.ID) < len(s.pen) {
			s.pen[b.ID] += b.Value
		}
	}
	if hold {
		s.holdEnds()
	}
	rp, repeats := s.P.RepetitionPenalty, s.P.repeats()
	for _, id := range s.seen {
		if int(id) >= len(s.pen) {
			continue
		}
		v := s.pen[id]
		if repeats {
			if v > 0 {
				v /= rp
			} else {
				v *= rp
			}
		}
		if n := s.count[id]; n > 0 {
			v -= float32(n)*s.P.FrequencyPenalty + s.P.PresencePenalty
		}
		s.pen[id] = v
	}
	if s.match != nil && mask {
		s.match.Mask(s.pen, s.ends)
	}
	return s.pen
}

// holdEnds sets the ends' penalized logits to -Inf.
func (s *Sampler) holdEnds() {
	for _, id := range s.ends {
		if id >= 0 && int(id) < len(s.pen) {
			s.pen[id] = float32(math.Inf(-1))
		}
	}
}

// Distribution returns the distribution the sampler draws from at these logits:
// softmax(logits/T) restricted by top-k, then top-p, then min-p, renormalised. For greedy
// parameters it is the point mass on the argmax. The support is in decreasing order of
// probability when top-k or top-p is set, else in id order. The result is valid until
// the next call.
func (s *Sampler) Distribution(logits []float32) *Dist {
	return s.distribution(s.Penalize(logits))
}

// distribution is Distribution of logits already penalized.
func (s *Sampler) distribution(logits []float32) *Dist {
	d := &s.dist
	d.IDs, d.Probs, d.scaled, d.sorted = d.IDs[:0], d.Probs[:0], d.scaled[:0], false
	if s.P.Greedy() {
		d.IDs = append(d.IDs, Argmax(logits))
		d.Probs = append(d.Probs, 1)
		d.scaled = append(d.scaled, 0)
		d.sorted = true
		return d
	}
	invT := float64(1 / s.P.Temperature)
	s.idx = s.idx[:0]
	for i := range logits {
		s.idx = append(s.idx, int32(i))
	}
	cmp := byLogit(logits)
	top := float64(logits[Argmax(logits)]) * invT
	topP := s.P.TopP > 0 && s.P.TopP < 1
	switch k := s.P.TopK; {
	case k > 0 && k < len(s.idx):
		partialSort(s.idx, k, cmp)
		s.idx = s.idx[:k]
		d.sorted = true
	case topP:
		s.idx = s.nucleus(logits, invT, top, cmp)
		d.sorted = true
		topP = false // cut already
	}
	sum := 0.0
	for _, id := range s.idx {
		x := float64(logits[id]) * invT
		e := math.Exp(x - top)
		d.IDs = append(d.IDs, id)
		d.Probs = append(d.Probs, float32(e))
		d.scaled = append(d.scaled, float32(x))
		sum += e
	}
	if topP {
		n, cum, lim := len(d.IDs), 0.0, float64(s.P.TopP)*sum
		for i := range n {
			cum += float64(d.Probs[i])
			if cum >= lim {
				n = i + 1
				break
			}
		}
		d.IDs, d.Probs, d.scaled = d.IDs[:n], d.Probs[:n], d.scaled[:n]
	}
	if s.P.MinP > 0 {
		// Probabilities are relative to the top token's (exp(0) = 1) until normalised.
		j := 0
		for i := range d.IDs {
			if d.Probs[i] >= s.P.MinP {
				d.IDs[j], d.Probs[j], d.scaled[j] = d.IDs[i], d.Probs[i], d.scaled[i]
				j++
			}
		}
		d.IDs, d.Probs, d.scaled = d.IDs[:j], d.Probs[:j], d.scaled[:j]
	}
	d.normalise()
	return d
}

// nucleus is top-p without top-k: it moves to the front of s.idx (every token id), in
// decreasing order of probability, the smallest set of the likeliest tokens holding
// TopP of the mass, and returns it — the set a sort of the whole vocabulary would cut
// to, as the cut of the top-k case takes it (each probability rounded to float32,
// relative to the top token's), but sorting only about as many tokens as it keeps: the
// best nucleusFirst, then four times as many more of the rest each round. A sort of
// Qwen2's 152,064 ids took 25-50 ms a token on one core, on the verifier's engine
// goroutine that runs every request's pass.
func (s *Sampler) nucleus(logits []float32, invT, top float64, cmp func(a, b int32) int) []int32 {
	sum := 0.0
	for _, l := range logits {
		sum += math.Exp(float64(l)*invT - top)
	}
	idx, lim, cum := s.idx, float64(s.P.TopP)*sum, 0.0
	for done, k := 0, nucleusFirst; done < len(idx); done, k = done+k, 4*k {
		k = min(k, len(idx)-done)
		partialSort(idx[done:], k, cmp)
		for i := done; i < done+k; i++ {
			cum += float64(float32(math.Exp(float64(logits[idx[i]])*invT - top)))
			if cum >= lim {
				return idx[:i+1]
			}
		}
	}
	return idx
}

// nucleusFirst is how many of the likeliest tokens nucleus sorts first: most
// nuclei of a language model are smaller.
const nucleusFirst = 256

// byLogit orders token ids by decreasing logit, ties by id, so the order is total.
func byLogit(logits []float32) func(a, b int32) int {
	return func(a, b int32) int {
		la, lb := logits[a], logits[b]
		switch {
		case la > lb:
			return -1
		case la < lb:
			return 1
		}
		return int(a) - int(b)
	}
}

func (d *Dist) normalise() {
	sum := 0.0
	for _, p := range d.Probs {
		sum += float64(p)
	}
	for i := range d.Probs {
		d.Probs[i] = float32(float64(d.Probs[i]) / sum)
	}
}

// Sample draws the token at absolute position pos: the argmax for greedy parameters,
// otherwise Gumbel-max over Distribution(logits) with noise keyed by (seed, pos, token).
func (s *Sampler) Sample(logits []float32, pos int) int32 {
	t, _ := s.Top2(logits, pos)
	return t
}

// Top2 returns Sample's token and the runner-up of the same race: the token that would
// have been drawn had the first been excluded (the second highest logit for greedy
// parameters), or -1 when there is none. A draft uses the runner-up as its guess of
// the verifier's correction.
func (s *Sampler) Top2(logits []float32, pos int) (first, second int32) {
	if s.match != nil && (s.P.Greedy() || !s.filtered()) {
		// Under a grammar the race is first run without its mask, as llama.cpp
		// samples: when the winner is a token the grammar allows, it is also the
		// masked race's winner (the mask only removes competitors), and a mask of
		// the whole vocabulary (0.2-0.8 ms a token on a 152k one) is saved. The
		// runner-up is kept only if allowed.
		if first, second = s.race(s.penalize(logits, false), pos); s.match.Allows(first, s.ends) {
			if second >= 0 && !s.match.Allows(second, s.ends) {
				second = -1
			}
			return first, second
		}
	}
	return s.race(s.Penalize(logits), pos)
}

// filtered reports whether top-k, top-p or min-p cut the distribution, which then
// depends on the grammar's mask as a whole.
func (s *Sampler) filtered() bool {
	return s.P.TopK != 0 || (s.P.TopP != 0 && s.P.TopP < 1) || s.P.MinP != 0
}

// race is Top2 on logits already penalized.
func (s *Sampler) race(logits []float32, pos int) (first, second int32) {
	r := newRace()
	switch {
	case s.P.Greedy():
		for i, l := range logits {
			r.offer(float64(l), int32(i))
		}
	case !s.filtered():
		// No filter: Gumbel-max needs only logits/T, not probabilities. The values
		// and the order (token ids) are those Distribution would give GumbelTop2, so
		// the draw is the same, without an exp per token.
		invT := float64(1 / s.P.Temperature)
		g := s.noiseBuf()
		for lo := 0; lo < len(logits); lo += len(g) {
			chunk := logits[lo:min(lo+len(g), len(logits))]
			gumbelRange(g[:len(chunk)], s.P.Seed, uint64(pos), uint64(lo))
			for i, l := range chunk {
				r.offer(float64(float32(float64(l)*invT))+g[i], int32(lo+i))
			}
		}
	default:
		return s.GumbelTop2(s.distribution(logits), pos)
	}
	return r.first, r.second
}

// GumbelMax returns argmax over d's support of logit/T + Gumbel(seed, pos, id). With the
// same seed and position, a draft and a verifier share every noise value, so the
// verifier's choice is exactly that of plain decoding and the draft's choice matches it
// whenever its distribution is close enough.
func (s *Sampler) GumbelMax(d *Dist, pos int) int32 {
	t, _ := s.GumbelTop2(d, pos)
	return t
}

// GumbelTop2 is GumbelMax and the runner-up of the same race (-1 when the support has
// one token).
func (s *Sampler) GumbelTop2(d *Dist, pos int) (first, second int32) {
	r := newRace()
	g := s.noiseBuf()
	for lo := 0; lo < len(d.IDs); lo += len(g) {
		ids := d.IDs[lo:min(lo+len(g), len(d.IDs))]
		gumbelIDs(g, s.P.Seed, uint64(pos), ids)
		for i, id := range ids {
			r.offer(float64(d.scaled[lo+i])+g[i], id)
		}
	}
	return r.first, r.second
}

// noiseChunk is how many tokens' noise a sampler draws at a time: enough for the
// vector code to run long, few enough to stay in the L1 cache.
const noiseChunk = 512

// noiseBuf returns the sampler's noise buffer, noiseChunk long.
func (s *Sampler) noiseBuf() []float64 {
	if s.noise == nil {
		s.noise = make([]float64, noiseChunk)
	}
	return s.noise
}

// race keeps the two highest offers; ties go to the earlier offer.
type race struct {
	best, next    float64
	first, second int32
}

func newRace() race {
	return race{best: math.Inf(-1), next: math.Inf(-1), first: -1, second: -1}
}

func (r *race) offer(v float64, id int32) {
	switch {
	case v > r.best:
		r.next, r.second = r.best, r.first
		r.best, r.first = v, id
	case v > r.next:
		r.next, r.second = v, id
	}
}

// Uniform returns a deterministic uniform value in (0, 1] for (seed, pos, stream):
// (h>>11 + 0.5)/2^53 rounded to float64, for a 64-bit hash h of the three. It is 1
// only for h>>11 = 2^53-1, where the +0.5 rounds up.
func Uniform(seed, pos, stream uint64) float64 {
	return uniformKeyed(posKey(seed, pos), stream)
}

// partialSort moves the k smallest elements (by cmp) of s to s[:k], sorted.
func partialSort(s []int32, k int, cmp func(a, b int32) int) {
	// Quickselect then sort the head.
	lo, hi := 0, len(s)-1
	for lo < hi {
		p := s[(lo+hi)/2]
		i, j := lo, hi
		for i <= j {
			for cmp(s[i], p) < 0 {
				i++
			}
			for cmp(s[j], p) > 0 {
				j--
			}
			if i <= j {
				s[i], s[j] = s[j], s[i]
				i++
				j--
			}
		}
		switch {
		case k-1 <= j:
			hi = j
		case k-1 >= i:
			lo = i
		default:
			lo = hi
		}
	}
	slices.SortFunc(s[:k], cmp)
}

// Truncate keeps the k most likely tokens (k ≤ 0 keeps all) and renormalises; the
// support is then in decreasing order of probability.
func (d *Dist) Truncate(k int) {
	if k <= 0 || k >= len(d.IDs) {
		return
	}
	if !d.sorted {
		idx := make([]int32, len(d.IDs))
		for i := range idx {
			idx[i] = int32(i)
		}
		partialSort(idx, k, func(a, b int32) int {
			switch pa, pb := d.Probs[a], d.Probs[b]; {
			case pa > pb:
				return -1
			case pa < pb:
				return 1
			}
			return int(d.IDs[a]) - int(d.IDs[b])
		})
		ids, probs, scaled := make([]int32, k), make([]float32, k), make([]float32, k)
		for i, j := range idx[:k] {
			ids[i], probs[i], scaled[i] = d.IDs[j], d.Probs[j], d.scaled[j]
		}
		copy(d.IDs, ids)
		copy(d.Probs, probs)
		copy(d.scaled, scaled)
		d.sorted = true
	}
	d.IDs, d.Probs, d.scaled = d.IDs[:k], d.Probs[:k], d.scaled[:k]
	d.normalise()
}

// Clone returns a copy that does not share storage with the sampler's buffers.
func (d *Dist) Clone() Dist {
	return Dist{IDs: slices.Clone(d.IDs), Probs: slices.Clone(d.Probs), scaled: slices.Clone(d.scaled), sorted: d.sorted}
}

// NewDist builds a distribution from ids and probabilities (as received from a peer).
func NewDist(ids []int32, probs []float32) Dist {
	return Dist{IDs: ids, Probs: probs}
}
