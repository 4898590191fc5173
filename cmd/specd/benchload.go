package main

// The load test of `specd bench --concurrency`: at each level, C clients send requests
// back to back over one connection until the level has its --requests, first with
// speculation and then without (or the reverse, alternating by level), --repeat rounds
// of both (alternating by round too).

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// maxConcurrency bounds a level of --concurrency: each client is a goroutine and a stream.
const maxConcurrency = 4096

// concurrencyList is the value of --concurrency: distinct levels in 1..maxConcurrency.
type concurrencyList []int

func (l *concurrencyList) String() string {
	var s []string
	for _, c := range *l {
		s = append(s, strconv.Itoa(c))
	}
	return strings.Join(s, ",")
}

func (l *concurrencyList) Set(v string) error {
	var out concurrencyList
	for _, f := range strings.Split(v, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || c < 1 || c > maxConcurrency {
			return fmt.Errorf("%q: want a comma-separated list of integers in 1..%d", v, maxConcurrency)
		}
		if slices.Contains(out, c) {
			return fmt.Errorf("%q: %d twice", v, c)
		}
		out = append(out, c)
	}
	*l = out
	return nil
}

// levelRequests is the number of requests a level of c clients sends over prompts
// prompts: n if set, else the least multiple of prompts that is at least max(2×c, 8),
// so that every client sends at least two, a level is never a single burst, and every
// level sends each prompt equally often (levels differ in load, not in their mix of
// prompts, whose acceptance differs from domain to domain).
func levelRequests(n, c, prompts int) int {
	if n > 0 {
		return n
	}
	least := max(2*c, 8)
	return (least + prompts - 1) / prompts * prompts
}

// percentile returns the p-th percentile (0..100) of xs, interpolating linearly between
// the closest ranks (as numpy's percentile does by default); 0 for no values. xs is not
// modified.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	r := p / 100 * float64(len(s)-1)
	lo := int(math.Floor(r))
	if lo >= len(s)-1 {
		return s[len(s)-1]
	}
	return s[lo] + (r-float64(lo))*(s[lo+1]-s[lo])
}

// codeName is a gRPC code as the protocol spells it (RESOURCE_EXHAUSTED), not as Go
// prints it (ResourceExhausted).
func codeName(c codes.Code) string {
	if c == codes.OK {
		return "OK"
	}
	var b strings.Builder
	for i, r := range c.String() {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}

// loadOutcome is one request of a level: the prompt it used and its result or error.
type loadOutcome struct {
	prompt int
	res    generateResult
	err    error
}

// loadRun is one mode at one concurrency level.
type loadRun struct {
	Requests        int     `json:"requests"`
	Completed       int     `json:"completed"` // requests that ended with a final message
	Tokens          int     `json:"tokens"`    // completion tokens of the completed requests
	WallSeconds     float64 `json:"wall_seconds"`
	TokensPerSecond float64 `json:"tokens_per_second"` // Tokens / WallSeconds
	LatencyP50      float64 `json:"latency_p50_seconds"`
	LatencyP99      float64 `json:"latency_p99_seconds"`
	TTFTP50         float64 `json:"ttft_p50_seconds"` // client-measured: request sent to first token received
	TTFTP99         float64 `json:"ttft_p99_seconds"`
	// PromptTokens of the completed requests, and how many of them the verifier's
	// prefix cache held (prompts repeat when there are more requests than prompts).
	PromptTokens       int `json:"prompt_tokens"`
	CachedPromptTokens int `json:"cached_prompt_tokens"`
	// Errors counts the failed requests by gRPC code ("RESOURCE_EXHAUSTED").
	Errors map[string]int `json:"errors"`
	// AcceptanceRate and MeanAcceptedPerRound pool the final stats of the completed
	// requests (accepted ÷ drafted, accepted ÷ rounds); nil for plain runs.
	AcceptanceRate       *float64 `json:"acceptance_rate,omitempty"`
	MeanAcceptedPerRound *float64 `json:"mean_accepted_per_round,omitempty"`
	// SoloChecked completed requests were compared with their prompt's solo run
	// (--check-solo; 0 without), and SoloMismatches of them differed.
	SoloChecked    int `json:"solo_checked"`
	SoloMismatches int `json:"solo_mismatches"`
}

func (r *loadRun) errorCount() int {
	n := 0
	for _, c := range r.Errors {
		n += c
	}
	return n
}

// summarize turns the outcomes of one run into its figures. solo holds each prompt's
// output ids when run alone (nil: no check).
func summarize(outs []loadOutcome, wall time.Duration, spec bool, solo [][]int32) loadRun {
	r := loadRun{Requests: len(outs), WallSeconds: wall.Seconds(), Errors: map[string]int{}}
	var lat, ttft []float64
	var rounds, drafted, accepted int
	for _, o := range outs {
		if o.err != nil {
			r.Errors[codeName(status.Code(o.err))]++
			continue
		}
		r.Completed++
		r.Tokens += o.res.Tokens
		r.PromptTokens += o.res.PromptTokens
		r.CachedPromptTokens += o.res.CachedPromptTokens
		lat = append(lat, o.res.WallSeconds)
		if o.res.firstChunk > 0 {
			ttft = append(ttft, o.res.firstChunk.Seconds())
		}
		rounds, drafted, accepted = rounds+o.res.Rounds, drafted+o.res.Drafted, accepted+o.res.Accepted
		if solo != nil {
			r.SoloChecked++
			if !slices.Equal(o.res.OutputIDs, solo[o.prompt]) {
				r.SoloMismatches++
			}
		}
	}
	if r.WallSeconds > 0 {
		r.TokensPerSecond = float64(r.Tokens) / r.WallSeconds
	}
	r.LatencyP50, r.LatencyP99 = percentile(lat, 50), percentile(lat, 99)
	r.TTFTP50, r.TTFTP99 = percentile(ttft, 50), percentile(ttft, 99)
	if spec {
		var acc, perRound float64
		if drafted > 0 {
			acc = float64(accepted) / float64(drafted)
		}
		if rounds > 0 {
			perRound = float64(accepted) / float64(rounds)
		}
		r.AcceptanceRate, r.MeanAcceptedPerRound = &acc, &perRound
	}
	return r
}

// runLevel sends n requests from c clients, each sending its next request when its
// last one ends; request i is do(ctx, i). It returns the outcomes in request order and
// the wall time from the first request sent to the last one ended, or ctx's error.
func runLevel(ctx context.Context, c, n int, do func(ctx context.Context, i int) (generateResult, error)) ([]loadOutcome, time.Duration, error) {
	outs := make([]loadOutcome, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	t0 := time.Now()
	for range c {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				outs[i].res, outs[i].err = do(ctx, i)
			}
		})
	}
	wg.Wait()
	wall := time.Since(t0)
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	return outs, wall, nil
}

// loadLevel is both modes at one concurrency level.
type loadLevel struct {
	Concurrency int     `json:"concurrency"`
	Speculative loadRun `json:"speculative"`
	Plain       loadRun `json:"plain"`
	Speedup     float64 `json:"speedup"` // speculative ÷ plain tokens per second (0 if plain made none)
	// RoundSpeedups is the speedup of each round, with --repeat rounds of both modes
	// (0 for a round whose plain run made no tokens): how far the ratio moves between
	// rounds, mostly with the machine.
	RoundSpeedups []float64 `json:"round_speedups,omitempty"`
}

type loadReport struct {
	Addr        string  `json:"addr"`
	Verifier    string  `json:"verifier"`
	Draft       string  `json:"draft"`
	MaxTokens   int     `json:"max_tokens"`
	Temperature float64 `json:"temperature"`
	Seed        uint64  `json:"seed"` // of every request: --seed, or picked at random
	Prompts     int     `json:"prompts"`
	CheckSolo   bool    `json:"check_solo"`
	// ResponseFormat is what every output had to be ("": free text).
	ResponseFormat string      `json:"response_format,omitempty"`
	Levels         []loadLevel `json:"levels"`
}

// loadConfig is what benchLoad needs beyond the report's header.
type loadConfig struct {
	levels    []int
	requests  int // per level, mode and round, at least the level's concurrency; 0: levelRequests' default
	rounds    int // of both modes at each level (0 or 1: one)
	checkSolo bool
	prompts   []benchPrompt
	run       benchRequest
	// prime, unless nil, puts a prompt in the verifier's prefix cache, unmeasured:
	// before each run, for every prompt the run uses, so that both modes find them
	// cached alike.
	prime    func(ctx context.Context, p benchPrompt) error
	progress io.Writer // a line per run; nil: none
}

// benchLoad runs the load levels, after the solo runs when cfg.checkSolo, and fills
// rep.Levels.
func benchLoad(ctx context.Context, cfg loadConfig, rep *loadReport) error {
	ps := cfg.prompts
	// solo[0] holds the speculative solo outputs, solo[1] the plain ones.
	var solo [2][][]int32
	if cfg.checkSolo {
		most := 0
		for _, c := range cfg.levels {
			most = max(most, levelRequests(cfg.requests, c, len(ps)))
		}
		for m, spec := range []bool{true, false} {
			for _, p := range ps[:min(len(ps), most)] {
				res, err := cfg.run(ctx, p, spec)
				if err != nil {
					return fmt.Errorf("solo run of prompt %s: %w", p.ID, err)
				}
				solo[m] = append(solo[m], res.OutputIDs)
			}
		}
	}
	rounds := max(cfg.rounds, 1)
	for k, c := range cfg.levels {
		n := levelRequests(cfg.requests, c, len(ps))
		lv := loadLevel{Concurrency: c}
		// By mode (0 speculative, 1 plain): every round's outcomes, and their wall time.
		var outs [2][]loadOutcome
		var walls [2]time.Duration
		for r := range rounds {
			// Alternate which mode goes first, by level and by round, so drift of the
			// machine hits both alike: over two rounds each mode runs once first and
			// once second.
			modes := []bool{true, false}
			if (k+r)%2 == 1 {
				modes = []bool{false, true}
			}
			var tps [2]float64
			for _, spec := range modes {
				if cfg.prime != nil {
					for _, p := range ps[:min(len(ps), n)] {
						if err := cfg.prime(ctx, p); err != nil {
							return err
						}
					}
				}
				run, wall, err := runLevel(ctx, c, n, func(ctx context.Context, i int) (generateResult, error) {
					return cfg.run(ctx, ps[i%len(ps)], spec)
				})
				if err != nil {
					return err
				}
				for i := range run {
					run[i].prompt = i % len(ps)
					// The verifier that served, and a draft any speculative request used (a
					// verifier that measures plain decoding faster opens none).
					if o := run[i]; spec && o.err == nil {
						rep.Verifier = cmp.Or(rep.Verifier, o.res.Verifier)
						rep.Draft = cmp.Or(rep.Draft, o.res.Draft)
					}
				}
				m, name := 0, "spec"
				if !spec {
					m, name = 1, "plain"
				}
				outs[m], walls[m] = append(outs[m], run...), walls[m]+wall
				one := summarize(run, wall, spec, nil)
				tps[m] = one.TokensPerSecond
				if cfg.progress != nil {
					round := ""
					if rounds > 1 {
						round = fmt.Sprintf(" round %d", r+1)
					}
					fmt.Fprintf(cfg.progress, "concurrency %3d %-5s%s %4d requests %8.1f tok/s  latency p50 %6.2fs  errors %d\n",
						c, name, round, one.Requests, one.TokensPerSecond, one.LatencyP50, one.errorCount())
				}
			}
			if rounds > 1 {
				// One entry per round, 0 where plain made no tokens (as Speedup), so
				// that entry r is round r+1's.
				x := 0.0
				if tps[1] > 0 {
					x = tps[0] / tps[1]
				}
				lv.RoundSpeedups = append(lv.RoundSpeedups, x)
			}
		}
		lv.Speculative = summarize(outs[0], walls[0], true, solo[0])
		lv.Plain = summarize(outs[1], walls[1], false, solo[1])
		if lv.Plain.TokensPerSecond > 0 {
			lv.Speedup = lv.Speculative.TokensPerSecond / lv.Plain.TokensPerSecond
		}
		rep.Levels = append(rep.Levels, lv)
	}
	return nil
}

// printLoad writes the load report as a table: a row per level and mode, then the
// errors by code.
func printLoad(w io.Writer, rep *loadReport) {
	fmt.Fprintf(w, "router %s, verifier %s, draft %s: %d prompts, up to %d tokens, temperature %g%s%s\n\n",
		rep.Addr, rep.Verifier, rep.Draft, rep.Prompts, rep.MaxTokens, rep.Temperature, seedNote(rep.Temperature, rep.Seed), formatNote(rep.ResponseFormat))
	fmt.Fprintf(w, "%5s %-5s %5s %6s %9s %8s %9s %9s %8s %8s %8s %7s %9s\n", "conc", "mode", "reqs", "errors", "tok/s", "speedup",
		"lat p50", "lat p99", "ttft p50", "ttft p99", "accepted", "cached", "solo diff")
	var errs []string
	for _, lv := range rep.Levels {
		for _, m := range []struct {
			name string
			r    *loadRun
		}{{"spec", &lv.Speculative}, {"plain", &lv.Plain}} {
			speedup, accepted, solo, cached := "-", "-", "-", "-"
			if m.r.PromptTokens > 0 {
				cached = fmt.Sprintf("%.0f%%", 100*float64(m.r.CachedPromptTokens)/float64(m.r.PromptTokens))
			}
			if m.r.AcceptanceRate != nil {
				speedup, accepted = fmt.Sprintf("%.2fx", lv.Speedup), fmt.Sprintf("%.1f%%", 100**m.r.AcceptanceRate)
			}
			if rep.CheckSolo {
				solo = fmt.Sprintf("%d/%d", m.r.SoloMismatches, m.r.SoloChecked)
			}
			fmt.Fprintf(w, "%5d %-5s %5d %6d %9.1f %8s %7.0fms %7.0fms %6.1fms %6.1fms %8s %7s %9s\n", lv.Concurrency, m.name, m.r.Requests,
				m.r.errorCount(), m.r.TokensPerSecond, speedup, 1000*m.r.LatencyP50, 1000*m.r.LatencyP99, 1000*m.r.TTFTP50, 1000*m.r.TTFTP99, accepted, cached, solo)
			codes := slices.Sorted(maps.Keys(m.r.Errors))
			for _, c := range codes {
				errs = append(errs, fmt.Sprintf("  concurrency %d %s: %d %s", lv.Concurrency, m.name, m.r.Errors[c], c))
			}
		}
	}
	if len(errs) > 0 {
		fmt.Fprintf(w, "\nerrors:\n%s\n", strings.Join(errs, "\n"))
	}
	if len(rep.Levels) > 0 && len(rep.Levels[0].RoundSpeedups) > 1 {
		fmt.Fprintf(w, "\nspeedup by round (the modes alternate which goes first):\n")
		for _, lv := range rep.Levels {
			var rs []string
			for _, x := range lv.RoundSpeedups {
				rs = append(rs, fmt.Sprintf("%.2fx", x))
			}
			fmt.Fprintf(w, "  concurrency %d: %s (%.2fx–%.2fx)\n", lv.Concurrency, strings.Join(rs, " "), slices.Min(lv.RoundSpeedups), slices.Max(lv.RoundSpeedups))
		}
	}
}

// loadSVG draws aggregate tokens per second against concurrency (log2 x-axis), a line
// for each mode.
func loadSVG(rep *loadReport) string {
	lvs := slices.SortedFunc(slices.Values(rep.Levels), func(a, b loadLevel) int { return a.Concurrency - b.Concurrency })
	top := 0.0
	for _, lv := range lvs {
		top = max(top, lv.Speculative.TokensPerSecond, lv.Plain.TokensPerSecond)
	}
	top *= 1.15
	if top == 0 {
		top = 1
	}
	const W, H, left, right, bottom, plotH = 760, 380, 60, 30, 80, 250
	y0 := float64(H - bottom)
	var b strings.Builder
	svgStart(&b, W, H, left, fmt.Sprintf("specd: aggregate tokens per second by concurrency (%d tokens, T=%g)", rep.MaxTokens, rep.Temperature))
	svgYGrid(&b, left, W-right, y0, plotH, top)
	lo, hi := 0.0, 0.0
	if len(lvs) > 0 {
		lo, hi = math.Log2(float64(lvs[0].Concurrency)), math.Log2(float64(lvs[len(lvs)-1].Concurrency))
	}
	x := func(c int) float64 {
		if hi == lo {
			return float64(left+W-right) / 2
		}
		return float64(left+20) + float64(W-right-left-40)*(math.Log2(float64(c))-lo)/(hi-lo)
	}
	y := func(v float64) float64 { return y0 - plotH*v/top }
	for _, lv := range lvs {
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#999"/><text x="%.1f" y="%.1f" text-anchor="middle">%d</text>`+"\n",
			x(lv.Concurrency), x(lv.Concurrency), y0, y0+5, x(lv.Concurrency), y0+18, lv.Concurrency)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="middle">concurrent clients (log2 scale)</text>`+"\n", (left+W-right)/2, y0+36)
	for _, m := range []struct {
		color string
		tps   func(loadLevel) float64
	}{{specColor, func(lv loadLevel) float64 { return lv.Speculative.TokensPerSecond }}, {plainColor, func(lv loadLevel) float64 { return lv.Plain.TokensPerSecond }}} {
		var pts []string
		for _, lv := range lvs {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(lv.Concurrency), y(m.tps(lv))))
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(pts, " "), m.color)
		for _, lv := range lvs {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"/>`+"\n", x(lv.Concurrency), y(m.tps(lv)), m.color)
		}
	}
	svgLegends(&b, left, H-18)
	b.WriteString("</svg>\n")
	return b.String()
}
