package services

import (
	"errors"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/specd-dev/specd/router"
)

// Breakers is one sony/gobreaker circuit breaker per endpoint, implementing
// router.Breakers: an endpoint whose calls fail Trip times in a row is not picked for
// Cooldown, then one probe request is let through (half-open) and its success closes
// the breaker again. Only failures of an endpoint that was reached count: an attempt
// that could not connect (router.ErrUnreachable) counts neither way, so that a
// restarting endpoint is used as soon as it accepts connections again instead of a
// Cooldown later; the router skips it meanwhile, and its health probe tells.
type Breakers struct {
	Trip     uint32        // consecutive failures that open a breaker
	Cooldown time.Duration // how long a breaker stays open before probing
	// OnChange, if set, is told of every state change (for logs and metrics).
	OnChange func(endpoint string, from, to gobreaker.State)

	mu sync.Mutex
	m  map[string]*gobreaker.TwoStepCircuitBreaker[struct{}]
}

var _ router.Breakers = (*Breakers)(nil)

// NewBreakers returns breakers that open after trip consecutive failures for cooldown.
func NewBreakers(trip uint32, cooldown time.Duration) *Breakers {
	return &Breakers{Trip: max(trip, 1), Cooldown: cooldown, m: map[string]*gobreaker.TwoStepCircuitBreaker[struct{}]{}}
}

func (b *Breakers) get(id string) *gobreaker.TwoStepCircuitBreaker[struct{}] {
	b.mu.Lock()
	defer b.mu.Unlock()
	cb, ok := b.m[id]
	if !ok {
		cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
			Name:        id,
			MaxRequests: 1,
			Timeout:     b.Cooldown,
			ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= b.Trip },
			IsExcluded:  func(err error) bool { return errors.Is(err, router.ErrUnreachable) },
			OnStateChange: func(name string, from, to gobreaker.State) {
				if b.OnChange != nil {
					b.OnChange(name, from, to)
				}
			},
		})
		b.m[id] = cb
	}
	return cb
}

// Ready reports whether ep's breaker is not open.
func (b *Breakers) Ready(ep router.Endpoint) bool {
	return b.get(ep.ID).State() != gobreaker.StateOpen
}

// Begin admits one call to ep.
func (b *Breakers) Begin(ep router.Endpoint) (func(error), bool) {
	done, err := b.get(ep.ID).Allow()
	if err != nil {
		return nil, false
	}
	return done, true
}

// Retain forgets the breakers of every endpoint not in live (by ID): those endpoints
// left discovery, so their breakers describe instances that are gone. Without it the
// breakers would grow with every instance that ever came and went, and one registered
// again under a known ID would start with the breaker its predecessor left, perhaps
// open. A call still running on a forgotten endpoint reports to its old breaker, which
// no longer counts.
func (b *Breakers) Retain(live []router.Endpoint) {
	keep := make(map[string]bool, len(live))
	for _, e := range live {
		keep[e.ID] = true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for id := range b.m {
		if !keep[id] {
			delete(b.m, id)
		}
	}
}

// States reports every breaker's state: 0 closed, 1 half-open, 2 open.
func (b *Breakers) States() map[string]int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]int64, len(b.m))
	for id, cb := range b.m {
		switch cb.State() {
		case gobreaker.StateHalfOpen:
			out[id] = 1
		case gobreaker.StateOpen:
			out[id] = 2
		default:
			out[id] = 0
		}
	}
	return out
}
