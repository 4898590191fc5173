package router

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// ErrEndpointDown marks a failure of the endpoint itself (unreachable, crashed, stream
// broken): the request may be resumed elsewhere. Backends wrap such errors with it;
// any other error (a bad request, a full queue) ends the request.
var ErrEndpointDown = errors.New("endpoint down")

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
	Final     any // non-nil on the last event: the backend's final message
}

// Stream yields a generation's events; Recv returns the final event last, then io.EOF
// or an error.
type Stream interface {
	Recv() (Event, error)
}

// Backend starts a generation attempt on a verifier.
type Backend interface {
	Start(ctx context.Context, a Attempt) (Stream, error)
}

// Breakers guard endpoints: Allow says whether an endpoint may be tried now, Done
// reports the outcome of using it. A nil Breakers allows everything.
type Breakers interface {
	Allow(Endpoint) bool
	Done(Endpoint, error)
}

// Router picks endpoints and relays generations.
type Router struct {
	Discovery   Discovery
	Breakers    Breakers
	MaxAttempts int // verifiers tried per request (default 3)
	// OnFailover, if set, is told of every resume (for logs, spans and metrics).
	OnFailover func(ctx context.Context, from Endpoint, streamed int, err error)
}

// Result sums up a relayed request.
type Result struct {
	Final     any     // the last attempt's final message
	IDs       []int32 // every token relayed
	Text      string  // all text relayed
	Attempts  []Attempt
	Failovers int
}

// Relay runs a request on a verifier picked for key, passes each event to sink, and when
// the verifier fails mid-stream (ErrEndpointDown) resumes on another one from the
// tokens already relayed: the client sees no gap and no repeated token. maxTokens is the
// request's limit; a request that has already produced all its tokens is not resumed.
func (r *Router) Relay(ctx context.Context, key string, b Backend, maxTokens int, sink func(Event) error) (Result, error) {
	var res Result
	exclude := map[string]bool{}
	attempts := r.MaxAttempts
	if attempts <= 0 {
		attempts = 3
	}
	var lastErr error
	for range attempts {
		ok := Health(nil)
		if r.Breakers != nil {
			ok = r.Breakers.Allow
		}
		v, d, err := Pick(r.Discovery, key, exclude, ok)
		if err != nil {
			if lastErr != nil {
				return res, fmt.Errorf("%w (after: %w)", err, lastErr)
			}
			return res, err
		}
		a := Attempt{Verifier: v, Draft: d, Resume: append([]int32(nil), res.IDs...), ResumeText: len(res.Text)}
		res.Attempts = append(res.Attempts, a)
		err = r.attempt(ctx, b, a, &res, sink)
		if r.Breakers != nil {
			r.Breakers.Done(v, err)
		}
		if err == nil {
			return res, nil
		}
		if !errors.Is(err, ErrEndpointDown) || ctx.Err() != nil {
			return res, err
		}
		lastErr = err
		exclude[v.ID] = true
		if len(res.IDs) >= maxTokens {
			return res, err
		}
		res.Failovers++
		if r.OnFailover != nil {
			r.OnFailover(ctx, v, len(res.IDs), err)
		}
	}
	return res, lastErr
}

func (r *Router) attempt(ctx context.Context, b Backend, a Attempt, res *Result, sink func(Event) error) error {
	s, err := b.Start(ctx, a)
	if err != nil {
		return err
	}
	for {
		ev, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: stream from %s ended before its final message", ErrEndpointDown, a.Verifier.Address)
		}
		if err != nil {
			return err // the backend marks endpoint failures with ErrEndpointDown
		}
		res.IDs = append(res.IDs, ev.IDs...)
		res.Text += ev.Text
		if ev.Final != nil {
			res.Final = ev.Final
		}
		if err := sink(ev); err != nil {
			return err
		}
		if ev.Final != nil {
			return nil
		}
	}
}
