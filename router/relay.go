package router

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/specd-dev/specd/generate"
	"github.com/specd-dev/specd/spec"
)

// ErrEndpointDown marks a failure of the endpoint itself (unreachable, crashed, stream
// broken): the request may be resumed elsewhere. Backends wrap such errors with it;
// any other error (a bad request, a full queue) ends the request.
var ErrEndpointDown = errors.New("endpoint down")

// ErrUnreachable marks an attempt that never reached its endpoint (no connection, so
// no stream): the request moves to another endpoint without spending one of its
// attempts or counting a failover, and breakers should not count it as the endpoint's
// failure — an endpoint restarting is unreachable for a moment and then fine. It wraps
// ErrEndpointDown.
var ErrUnreachable = fmt.Errorf("%w: unreachable", ErrEndpointDown)

// ErrAtCapacity marks a verifier's refusal for lack of capacity (its queue is full,
// or its admission wait ran out): the request moves to another verifier, as with
// ErrUnreachable, and only when every one refused is the last refusal (with its retry
// hint) the request's answer. Backends wrap such refusals with it.
var ErrAtCapacity = errors.New("verifier at capacity")

// Attempt is one try of a request on one verifier.
type Attempt struct {
	Verifier   Endpoint
	Draft      *Endpoint // nil: decode plainly
	Resume     []int32   // tokens already streamed to the client, to continue after
	ResumeText int       // bytes of text already streamed
}

// Event is what a verifier streams: committed tokens with their text, or the end.
type Event struct {
	IDs       []int32
	Positions []int
	Text      string
	Final     *Final // non-nil on the last event
	// Logprobs, when the request asked for them: one per entry of IDs.
	Logprobs []*generate.Logprobs
	// PromptLogprobs, when the request asked for them: the next prompt tokens'
	// log-probabilities, continuing those of the attempt's earlier events. An
	// attempt sends every prompt token's before its first token; Relay passes each
	// on once, however many attempts sent it.
	PromptLogprobs []*generate.Logprobs
	// Progress is the attempt's speculation so far (nil: unchanged, or not reported).
	// The verifier sends it with the final event and whenever it changed.
	Progress *Progress
}

// Progress counts what one attempt did from its start, as its final stats would if it
// ended now. When an attempt fails, the last progress it reported is added to the
// final stats of the attempt that finishes the request, so that they count the
// rounds, fallbacks and waits of the whole request.
type Progress struct {
	Rounds, DraftedTokens, AcceptedTokens int
	LookupTokens, LookupAcceptedTokens    int
	Fallbacks, DraftRefusals              int
	RoundTrips                            int           // fresh draft rounds timed
	RoundTripTotal                        time.Duration // their summed round trips
	QueueWait                             time.Duration
}

func (p *Progress) add(q Progress) {
	p.Rounds += q.Rounds
	p.DraftedTokens += q.DraftedTokens
	p.AcceptedTokens += q.AcceptedTokens
	p.LookupTokens += q.LookupTokens
	p.LookupAcceptedTokens += q.LookupAcceptedTokens
	p.Fallbacks += q.Fallbacks
	p.DraftRefusals += q.DraftRefusals
	p.RoundTrips += q.RoundTrips
	p.RoundTripTotal += q.RoundTripTotal
	p.QueueWait += q.QueueWait
}

// addEarlier adds to the final stats of the attempt that finished a request (whose
// own progress is last) what its earlier attempts did.
func (s *Stats) addEarlier(earlier, last Progress) {
	if earlier == (Progress{}) {
		return
	}
	s.Rounds += earlier.Rounds
	s.DraftedTokens += earlier.DraftedTokens
	s.AcceptedTokens += earlier.AcceptedTokens
	s.LookupTokens += earlier.LookupTokens
	s.LookupAcceptedTokens += earlier.LookupAcceptedTokens
	s.Fallbacks += earlier.Fallbacks
	s.DraftRefusals += earlier.DraftRefusals
	s.QueueWait += earlier.QueueWait
	s.AcceptanceRate, s.MeanAcceptedPerRound = 0, 0
	if s.DraftedTokens > 0 {
		s.AcceptanceRate = float32(s.AcceptedTokens) / float32(s.DraftedTokens)
	}
	if s.Rounds > 0 {
		s.MeanAcceptedPerRound = float32(s.AcceptedTokens) / float32(s.Rounds)
	}
	if n := earlier.RoundTrips + last.RoundTrips; n > 0 {
		s.MeanRoundTrip = (earlier.RoundTripTotal + last.RoundTripTotal) / time.Duration(n)
	}
}

// Final is how a generation ended, as its verifier reports it.
type Final struct {
	Reason    generate.Finish
	Stats     Stats
	PromptIDs []int32 // the prompt as the verifier took it (nil: not reported)
	// EndLogprobs: when the request asked for log-probabilities and the generation
	// ended on an end-of-generation token, that token's (it is in no event's IDs);
	// else nil.
	EndLogprobs *generate.Logprobs
}

// Stats describe a finished generation. Counts of draft and lookup tokens are those the
// verifier checked; durations are measured by the verifier.
type Stats struct {
	PromptTokens, CompletionTokens, CachedPromptTokens int
	Rounds, DraftedTokens, AcceptedTokens              int
	LookupTokens, LookupAcceptedTokens                 int
	AcceptanceRate, MeanAcceptedPerRound               float32
	DecodeTokensPerSecond                              float64
	TimeToFirstToken, Total, MeanRoundTrip, QueueWait  time.Duration
	Verifier, Draft                                    Served // Draft is zero when none was used
	Mode                                               Verification
	Fallbacks                                          int // times the verifier lost its draft and decoded on plainly
	Failovers                                          int // times the router resumed the request on another verifier
	// DraftRefusals: times the draft refused the session (full, or declining what it
	// was asked) and the verifier decoded on plainly. Not failures of the draft: they
	// do not count against its breaker, as Fallbacks do.
	DraftRefusals int
}

// Served names the endpoint that served part of a request, and its model.
type Served struct{ Address, Model string }

// Verification is how drafted tokens were checked: greedy (temperature 0) or a
// sampled request's mode.
type Verification struct {
	Greedy bool
	Mode   spec.Mode // when not greedy; 0: unspecified
}

// Stream yields a generation's events; Recv returns the final event last, then io.EOF
// or an error. The router reads that end too (once) before it returns.
type Stream interface {
	Recv() (Event, error)
}

// Backend starts a generation attempt on a verifier.
type Backend interface {
	Start(ctx context.Context, a Attempt) (Stream, error)
}

// Breakers guard endpoints with circuit breakers. Ready says whether an endpoint may be
// picked now (its breaker is not open); Begin admits one use of it and returns the
// function that reports the outcome (nil error, or the failure). Relay reports a
// verifier's success when it streams its first event, and a stream that breaks after
// that as a failure of a use of its own. A nil Breakers allows everything.
type Breakers interface {
	Ready(Endpoint) bool
	Begin(Endpoint) (done func(error), ok bool)
}

// Router picks endpoints and relays generations.
type Router struct {
	Discovery Discovery
	Breakers  Breakers
	// Healthy says which endpoints were last seen up (a health probe); Relay prefers
	// them and tries the others only when no healthy verifier is left. nil: all.
	Healthy     Health
	MaxAttempts int // verifiers tried per request (default 3)
	// OnFailover, if set, is told of every resume (for logs, spans and metrics).
	OnFailover func(ctx context.Context, from Endpoint, streamed int, err error)
}

// Result sums up a relayed request.
type Result struct {
	// Final is the last attempt's end, its stats counting every attempt's rounds.
	Final    *Final
	IDs      []int32              // every token relayed
	Text     string               // all text relayed
	Logprobs []*generate.Logprobs // every token's, when the request asked for them
	// PromptLogprobs: the prompt's tokens', when the request asked for them (the
	// first with its bytes only), each once.
	PromptLogprobs []*generate.Logprobs
	Attempts       []Attempt
	Failovers      int
	earlier        Progress // what the attempts that failed had done
}

// Progress is what the request's attempts that failed had done, as they last reported
// it: for a request that ended without a final message (every verifier failed, or the
// client went away), what its final stats would have counted of them. A finished
// request's Final counts them already.
func (r Result) Progress() Progress { return r.earlier }

// Relay runs a request on a verifier picked for key, passes each event to sink, and when
// the verifier fails mid-stream (ErrEndpointDown) resumes on another one from the
// tokens already relayed: the client sees no gap and no repeated token. A request that
// had produced all its tokens is resumed too: the next verifier ends it at once, so the
// client gets its final message rather than the failure.
// model is the model the request names: only its verifiers are tried. With none named
// ("") any verifier may start the request, and a resume stays on the model of the
// verifier that started it: resumed ids mean nothing in another model's vocabulary.
func (r *Router) Relay(ctx context.Context, key, model string, b Backend, sink func(Event) error) (Result, error) {
	var res Result
	exclude := map[string]bool{}
	attempts := r.MaxAttempts
	if attempts <= 0 {
		attempts = 3
	}
	var lastErr error
	var busy error // the last refusal for lack of capacity
	// Attempts that never reached their verifier do not count; each one excludes an
	// endpoint, so the loop ends once every known verifier was tried.
	for started := 0; started < attempts; {
		v, d, err := Pick(r.Discovery, key, exclude, r.usable(true, model))
		if errors.Is(err, ErrNoVerifier) && r.Healthy != nil {
			v, d, err = Pick(r.Discovery, key, exclude, r.usable(false, model))
		}
		if err != nil {
			if busy != nil {
				return res, busy // every verifier left was full: its refusal says when to retry
			}
			if lastErr != nil {
				return res, fmt.Errorf("%w (after: %w)", err, lastErr)
			}
			return res, err
		}
		done := func(error) {}
		if r.Breakers != nil {
			var admitted bool
			if done, admitted = r.Breakers.Begin(v); !admitted {
				exclude[v.ID] = true // half-open and already probing: try another
				continue
			}
		}
		draftDone := func(error) {}
		if d != nil && r.Breakers != nil {
			var admitted bool
			if draftDone, admitted = r.Breakers.Begin(*d); !admitted {
				d, draftDone = nil, func(error) {} // its breaker is probing: decode plainly
			}
		}
		a := Attempt{Verifier: v, Draft: d, Resume: append([]int32(nil), res.IDs...), ResumeText: len(res.Text)}
		res.Attempts = append(res.Attempts, a)
		// The verifier's breaker hears of its success as soon as it streams: a
		// half-open breaker's probe closes it then, rather than when a long generation
		// ends, which would keep the verifier from every other request meanwhile.
		answered := false
		draftDown, err := r.attempt(ctx, b, a, &res, sink, func() {
			if !answered {
				answered = true
				done(nil)
			}
		})
		switch {
		case !answered && errors.Is(err, ErrEndpointDown):
			done(err)
		case !answered:
			done(nil) // the endpoint answered; a bad request is not its failure
		case errors.Is(err, ErrEndpointDown) && r.Breakers != nil:
			// It streamed, then broke: a failure all the same, reported as a use of
			// its own (the first report was spent on the success).
			if again, ok := r.Breakers.Begin(v); ok {
				again(err)
			}
		}
		switch {
		case draftDown:
			draftDone(fmt.Errorf("%w: draft %s failed during the request", ErrEndpointDown, d.Address))
		case err == nil && res.Final != nil && res.Final.Stats.Draft.Address != "":
			draftDone(nil)
		default:
			// Not the draft's doing, or the verifier did not use the draft (one token
			// to generate, speculation off): neither success nor failure, so a
			// half-open breaker waits for a request that does reach the draft.
			draftDone(ErrUnreachable)
		}
		if err == nil {
			return res, nil
		}
		if errors.Is(err, ErrAtCapacity) && ctx.Err() == nil {
			// Full, not failed: another verifier may have room. Like an unreachable
			// one, it costs no attempt; the loop ends when every verifier was tried.
			busy = err
			exclude[v.ID] = true
			res.Attempts = res.Attempts[:len(res.Attempts)-1]
			if model == "" && len(res.IDs) > 0 {
				model = v.Model // tokens relayed: the request has started on this model
			}
			continue
		}
		if !errors.Is(err, ErrEndpointDown) || ctx.Err() != nil {
			return res, err
		}
		lastErr = err
		exclude[v.ID] = true
		if errors.Is(err, ErrUnreachable) {
			res.Attempts = res.Attempts[:len(res.Attempts)-1]
			continue
		}
		started++
		if model == "" {
			model = v.Model // the model that started the request continues it
		}
		res.Failovers++
		if r.OnFailover != nil {
			r.OnFailover(ctx, v, len(res.IDs), err)
		}
	}
	return res, lastErr
}

// usable is the Health of Pick: a verifier of model (any, when ""), breakers not open,
// and when healthyOnly, last seen up.
func (r *Router) usable(healthyOnly bool, model string) Health {
	serves := ServesModel(model)
	if r.Breakers == nil && (!healthyOnly || r.Healthy == nil) {
		return serves
	}
	return func(e Endpoint) bool {
		if serves != nil && !serves(e) {
			return false
		}
		if r.Breakers != nil && !r.Breakers.Ready(e) {
			return false
		}
		return !healthyOnly || r.Healthy == nil || r.Healthy(e)
	}
}

// Usable is the Health a request is first picked with: verifiers of model (any, when
// "") whose breaker is not open and that were last seen up. Calls that need one
// verifier but are not relayed (Tokenize) pick with it too.
func (r *Router) Usable(model string) Health { return r.usable(true, model) }

// ServesModel is the Health of Pick that keeps only the verifiers of model (drafts
// are paired by tokenizer, not by name); nil, allowing all, when model is "".
func ServesModel(model string) Health {
	if model == "" {
		return nil
	}
	return func(e Endpoint) bool { return e.Role != Verifier || e.Model == model }
}

// attempt relays one attempt's events to sink. answered is called before the first
// event is passed on. draftDown reports that its verifier lost the draft and fell back
// to plain decoding. When it fails, what it had done (its last progress) is added to
// res.earlier.
func (r *Router) attempt(ctx context.Context, b Backend, a Attempt, res *Result, sink func(Event) error, answered func()) (draftDown bool, err error) {
	s, err := b.Start(ctx, a)
	if err != nil {
		return false, err
	}
	var done Progress
	prompt := 0 // prompt log-probabilities this attempt has sent
	defer func() {
		if err != nil {
			res.earlier.add(done)
		}
	}()
	for {
		ev, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return false, fmt.Errorf("%w: stream from %s ended before its final message", ErrEndpointDown, a.Verifier.Address)
		}
		if err != nil {
			return false, err // the backend marks endpoint failures with ErrEndpointDown
		}
		answered()
		if ev.Progress != nil {
			done = *ev.Progress
		}
		if n := len(ev.PromptLogprobs); n > 0 {
			// An earlier attempt may have passed some of them on already.
			ev.PromptLogprobs = ev.PromptLogprobs[min(max(len(res.PromptLogprobs)-prompt, 0), n):]
			prompt += n
			res.PromptLogprobs = append(res.PromptLogprobs, ev.PromptLogprobs...)
			if len(ev.PromptLogprobs) == 0 && len(ev.IDs) == 0 && ev.Text == "" && ev.Final == nil && len(ev.Logprobs) == 0 {
				continue // nothing new for the client
			}
		}
		res.IDs = append(res.IDs, ev.IDs...)
		res.Logprobs = append(res.Logprobs, ev.Logprobs...)
		res.Text += ev.Text
		if ev.Final != nil {
			draftDown = ev.Final.Stats.Fallbacks > 0
			// The verifier knows only the address it listens on (0.0.0.0:7071 says
			// nothing of where it is); the client is told the one it was reached at.
			ev.Final.Stats.Verifier.Address = a.Verifier.Address
			ev.Final.Stats.addEarlier(res.earlier, done)
			ev.Final.Stats.Failovers = res.Failovers
			res.Final = ev.Final
			// Read the stream's end (io.EOF, which follows the final message at once)
			// before the client sees the final message and may hang up: so the stream
			// ends with the verifier's status instead of being cut off with the
			// request, which looks failed to whoever traces it. What it says changes
			// nothing now.
			s.Recv()
		}
		if err := sink(ev); err != nil {
			return draftDown, err
		}
		if ev.Final != nil {
			return draftDown, nil
		}
	}
}
