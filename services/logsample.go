package services

import (
	"sync"
	"time"
)

// RefusalLogEvery is the least time between two log records of refusals of one kind.
const RefusalLogEvery = 10 * time.Second

// maxSampleKinds bounds the kinds a LogSampler remembers; past it, it forgets them all
// (at worst one more record per kind).
const maxSampleKinds = 1024

// LogSampler lets one log record of each kind through per Every and counts the ones it
// held back, so that a flood of refusals — a scanner, a client with a bad key — cannot
// fill the log while each kind of refusal still shows. Its zero value is not usable;
// set Every.
type LogSampler struct {
	Every time.Duration

	mu    sync.Mutex
	kinds map[string]*sampled
}

type sampled struct {
	last time.Time
	held int
}

// Allow reports whether to log a record of kind at now, and how many records of that
// kind it held back since the last one it let through.
func (s *LogSampler) Allow(kind string, now time.Time) (ok bool, held int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.kinds[kind]
	if k == nil {
		if len(s.kinds) >= maxSampleKinds || s.kinds == nil {
			s.kinds = map[string]*sampled{}
		}
		s.kinds[kind] = &sampled{last: now}
		return true, 0
	}
	if now.Sub(k.last) < s.Every {
		k.held++
		return false, 0
	}
	held, k.last, k.held = k.held, now, 0
	return true, held
}
