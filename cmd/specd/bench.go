package main

import (
	"bufio"
	"context"
	"encoding/json"
	"encoding/xml"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/specd-dev/specd/modelpath"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/services"
)

// benchRequest runs one bench request for prompt p, speculative or plain, bounded by
// --timeout.
type benchRequest func(ctx context.Context, p benchPrompt, spec bool) (generateResult, error)

type benchPrompt struct {
	ID     string `json:"id"`
	Domain string `json:"domain"`
	Prompt string `json:"prompt"`
}

// benchFigures are the totals of one group of runs (a domain, or all).
type benchFigures struct {
	Prompts              int     `json:"prompts"`
	SpecTokens           int     `json:"spec_tokens"`
	PlainTokens          int     `json:"plain_tokens"`
	SpecSeconds          float64 `json:"spec_seconds"`
	PlainSeconds         float64 `json:"plain_seconds"`
	SpecTokensPerSecond  float64 `json:"spec_tokens_per_second"`
	PlainTokensPerSecond float64 `json:"plain_tokens_per_second"`
	Speedup              float64 `json:"speedup"`
	Rounds               int     `json:"rounds"`
	Drafted              int     `json:"drafted"`
	Accepted             int     `json:"accepted"`
	LookupTokens         int     `json:"lookup_tokens"`
	LookupAccepted       int     `json:"lookup_accepted"`
	AcceptanceRate       float64 `json:"acceptance_rate"`
	MeanAcceptedPerRound float64 `json:"mean_accepted_per_round"`
	MeanRoundTripSeconds float64 `json:"mean_round_trip_seconds"`
	IdenticalOutputs     int     `json:"identical_outputs"`
	// PromptTokens are the prompts' tokens over all runs of one mode, and the Cached
	// fields how many of them each mode found in the verifier's prefix cache.
	PromptTokens            int `json:"prompt_tokens"`
	SpecCachedPromptTokens  int `json:"spec_cached_prompt_tokens"`
	PlainCachedPromptTokens int `json:"plain_cached_prompt_tokens"`
	rttSum                  float64
}

func (f *benchFigures) add(spec, plain generateResult) {
	f.Prompts++
	f.SpecTokens += spec.Tokens
	f.PlainTokens += plain.Tokens
	f.SpecSeconds += spec.WallSeconds
	f.PlainSeconds += plain.WallSeconds
	f.Rounds += spec.Rounds
	f.Drafted += spec.Drafted
	f.Accepted += spec.Accepted
	f.LookupTokens += spec.LookupTokens
	f.LookupAccepted += spec.LookupAccepted
	f.rttSum += spec.MeanRoundTrip * float64(spec.Rounds)
	f.PromptTokens += spec.PromptTokens
	f.SpecCachedPromptTokens += spec.CachedPromptTokens
	f.PlainCachedPromptTokens += plain.CachedPromptTokens
	if slices.Equal(spec.OutputIDs, plain.OutputIDs) {
		f.IdenticalOutputs++
	}
}

func (f *benchFigures) finish() {
	if f.SpecSeconds > 0 {
		f.SpecTokensPerSecond = float64(f.SpecTokens) / f.SpecSeconds
	}
	if f.PlainSeconds > 0 {
		f.PlainTokensPerSecond = float64(f.PlainTokens) / f.PlainSeconds
	}
	if f.PlainTokensPerSecond > 0 {
		f.Speedup = f.SpecTokensPerSecond / f.PlainTokensPerSecond
	}
	if f.Drafted > 0 {
		f.AcceptanceRate = float64(f.Accepted) / float64(f.Drafted)
	}
	if f.Rounds > 0 {
		f.MeanAcceptedPerRound = float64(f.Accepted) / float64(f.Rounds)
		f.MeanRoundTripSeconds = f.rttSum / float64(f.Rounds)
	}
}

type benchReport struct {
	benchFigures
	Addr        string  `json:"addr"`
	Verifier    string  `json:"verifier"`
	Draft       string  `json:"draft"`
	MaxTokens   int     `json:"max_tokens"`
	Temperature float64 `json:"temperature"`
	Seed        uint64  `json:"seed"` // of every request: --seed, or picked at random
	Mode        string  `json:"mode"`
	Repeats     int     `json:"repeats"`
	// ResponseFormat is what every output had to be ("": free text): json_object,
	// json_schema, grammar, regex or choice, whose outputs end where they are whole.
	ResponseFormat string                   `json:"response_format,omitempty"`
	Domains        map[string]*benchFigures `json:"domains"`
}

func readPrompts(path string) ([]benchPrompt, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, usageError{err}
	}
	defer f.Close()
	var ps []benchPrompt
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for line := 1; sc.Scan(); line++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var p benchPrompt
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			return nil, usagef("%s:%d: %v", path, line, err)
		}
		if p.Prompt == "" {
			return nil, usagef("%s:%d: no \"prompt\"", path, line)
		}
		if p.Domain == "" {
			p.Domain = "default"
		}
		ps = append(ps, p)
	}
	if err := sc.Err(); err != nil {
		return nil, usageError{fmt.Errorf("%s: %w", path, err)}
	}
	if len(ps) == 0 {
		return nil, usagef("%s: no prompts", path)
	}
	return ps, nil
}

func benchCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var co clientOptions
	var so samplingOptions
	var sp specOptions
	co.addFlags(fs)
	co.addModelFlag(fs)
	so.addFlags(fs)
	sp.addFlags(fs)
	fs.Lookup("temp").DefValue = "0"
	so.temp = 0
	var promptsPath, svgPath string
	var asJSON, checkSolo bool
	var repeats, requests int
	var levels concurrencyList
	defPrompts := filepath.Join(filepath.Dir(modelpath.Dir("")), "bench", "prompts.jsonl")
	fs.StringVar(&promptsPath, "prompts", defPrompts, "JSONL file with a \"prompt\" (and optional \"domain\", \"id\") per line")
	fs.StringVar(&svgPath, "svg", "", "write a chart of tokens per second to this SVG file: by domain, or with --concurrency by concurrency")
	fs.BoolVar(&asJSON, "json", false, "print one JSON object")
	fs.IntVar(&repeats, "repeat", 1, "runs of each prompt in each mode; with --concurrency, rounds of both modes at each level, alternating which goes first (the figures pool the rounds; the report gives each round's speedup)")
	fs.Var(&levels, "concurrency", "load test: comma-separated numbers of concurrent clients, e.g. 1,2,4,8 (default: no load test; each prompt alone)")
	fs.IntVar(&requests, "requests", 0, "with --concurrency: requests per level, mode and round, at least the largest concurrency (0: the least multiple of the number of prompts that is at least max(2×concurrency, 8))")
	fs.BoolVar(&checkSolo, "check-solo", false, "with --concurrency: run each prompt alone first and count requests under load whose output differs (greedy or seeded only)")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if err := co.validate(); err != nil {
		return err
	}
	load := len(levels) > 0
	if !load && (flagSet(fs, "requests") || checkSolo) {
		return usagef("--requests and --check-solo need --concurrency")
	}
	if requests < 0 {
		return usagef("--requests %d: want at least 1, or 0 for the default", requests)
	}
	if c := slices.Max(append([]int{0}, levels...)); requests > 0 && requests < c {
		return usagef("--requests %d: fewer than the %d clients of --concurrency %d, which would never all be busy", requests, c, c)
	}
	if checkSolo && so.temp != 0 && !so.seed.set {
		return usagef("--check-solo: needs greedy (--temp 0) or seeded (--seed S) requests")
	}
	if sp.noSpec {
		return usagef("--no-spec: bench alternates speculation on and off itself")
	}
	if repeats < 1 {
		return usagef("--repeat %d: want at least 1", repeats)
	}
	if svgPath != "" {
		if err := checkWritable(svgPath); err != nil {
			return usagef("--svg: %v", err)
		}
	}
	params, err := so.params()
	if err != nil {
		return err
	}
	rf, err := so.responseFormat()
	if err != nil {
		return err
	}
	spo, err := sp.proto()
	if err != nil {
		return err
	}
	ps, err := readPrompts(promptsPath)
	if err != nil {
		return err
	}
	cc, err := co.dial()
	if err != nil {
		return err
	}
	defer cc.Close()
	client := specdv1.NewGenerationServiceClient(cc)
	run := func(ctx context.Context, p benchPrompt, spec bool) (generateResult, error) {
		o := proto.Clone(spo).(*specdv1.SpeculationOptions)
		o.Disabled = !spec // as generate --no-spec
		req := &specdv1.GenerateRequest{Model: co.model, Prompt: p.Prompt, MaxTokens: uint32(so.maxTokens), Sampling: services.SamplingToProto(params),
			Stop: so.stop, StopTokenIds: so.stopIDs, IgnoreEos: so.ignoreEOS, ResponseFormat: rf, Speculation: o, Domain: p.Domain}
		rctx, cancel := context.WithTimeout(ctx, co.timeout)
		defer cancel()
		return collect(rctx, client, req, nil)
	}
	// prime sends p once, unmeasured, with one new token and no speculation, so that the
	// verifier's prefix cache holds its prompt for both modes alike: otherwise the mode
	// that ran a prompt first would pay its prefill and the other find it cached.
	prime := func(ctx context.Context, p benchPrompt) error {
		req := &specdv1.GenerateRequest{Model: co.model, Prompt: p.Prompt, MaxTokens: 1, Speculation: &specdv1.SpeculationOptions{Disabled: true}, Domain: p.Domain}
		rctx, cancel := context.WithTimeout(ctx, co.timeout)
		defer cancel()
		if _, err := collect(rctx, client, req, nil); err != nil {
			return fmt.Errorf("priming the cache with prompt %s: %w", p.ID, err)
		}
		return nil
	}
	// One warm-up request in each mode (connections, first-touch of the weights).
	for _, spec := range []bool{true, false} {
		if _, err := run(ctx, ps[0], spec); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	if load {
		rep := loadReport{Addr: co.addr, MaxTokens: so.maxTokens, Temperature: so.temp, Seed: params.Seed, Prompts: len(ps), CheckSolo: checkSolo,
			ResponseFormat: formatName(rf)}
		cfg := loadConfig{levels: levels, requests: requests, rounds: repeats, checkSolo: checkSolo, prompts: ps, run: run, prime: prime}
		if !asJSON {
			cfg.progress = stderr
		}
		if err := benchLoad(ctx, cfg, &rep); err != nil {
			return err
		}
		return writeBench(stdout, svgPath, asJSON, &rep, func() string { return loadSVG(&rep) }, func(w io.Writer) { printLoad(w, &rep) })
	}
	rep := benchReport{Addr: co.addr, MaxTokens: so.maxTokens, Temperature: so.temp, Seed: params.Seed, Repeats: repeats, Domains: map[string]*benchFigures{},
		ResponseFormat: formatName(rf)}
	for r := range repeats {
		for i, p := range ps {
			// Alternate which mode goes first, so slow drift of the machine (the two
			// vCPUs differ, other load comes and goes) hits both modes alike.
			var spec, plain generateResult
			err := prime(ctx, p)
			if err != nil {
				return err
			}
			if (i+r)%2 == 0 {
				if spec, err = run(ctx, p, true); err == nil {
					plain, err = run(ctx, p, false)
				}
			} else {
				if plain, err = run(ctx, p, false); err == nil {
					spec, err = run(ctx, p, true)
				}
			}
			if err != nil {
				return fmt.Errorf("prompt %s: %w", p.ID, err)
			}
			rep.Verifier, rep.Draft, rep.Mode = spec.Verifier, spec.Draft, spec.Mode
			rep.add(spec, plain)
			d := rep.Domains[p.Domain]
			if d == nil {
				d = &benchFigures{}
				rep.Domains[p.Domain] = d
			}
			d.add(spec, plain)
			if !asJSON {
				fmt.Fprintf(stderr, "%-16s spec %6.1f tok/s  plain %6.1f tok/s  accepted %3d/%3d\n", p.ID,
					float64(spec.Tokens)/spec.WallSeconds, float64(plain.Tokens)/plain.WallSeconds, spec.Accepted, spec.Drafted)
			}
		}
	}
	rep.finish()
	for _, d := range rep.Domains {
		d.finish()
	}
	return writeBench(stdout, svgPath, asJSON, &rep, func() string { return benchSVG(&rep) }, func(w io.Writer) { printBench(w, &rep) })
}

// seedNote is ", seed S" for a sampled run, "" for a greedy one (which has no use for
// a seed).
func seedNote(temp float64, seed uint64) string {
	if temp == 0 {
		return ""
	}
	return fmt.Sprintf(", seed %d", seed)
}

// formatName names a response format as --response-format does, or grammar, regex or
// choice ("" for free text).
func formatName(rf *specdv1.ResponseFormat) string {
	switch rf.GetType() {
	case specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_JSON_OBJECT:
		return "json_object"
	case specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_JSON_SCHEMA:
		return "json_schema"
	case specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_GRAMMAR:
		return "grammar"
	case specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_REGEX:
		return "regex"
	case specdv1.ResponseFormatType_RESPONSE_FORMAT_TYPE_CHOICE:
		return "choice"
	}
	return ""
}

// formatNote is ", response format F" for a run under one, "" for free text.
func formatNote(name string) string {
	if name == "" {
		return ""
	}
	return ", response format " + name
}

// writeBench writes a bench report as JSON or as a table, then its chart to svgPath
// (unless empty): a chart that fails to be written loses no figures.
func writeBench(stdout io.Writer, svgPath string, asJSON bool, rep any, svg func() string, table func(io.Writer)) error {
	if asJSON {
		if err := json.NewEncoder(stdout).Encode(rep); err != nil {
			return err
		}
	} else {
		table(stdout)
	}
	if svgPath != "" {
		if err := os.WriteFile(svgPath, []byte(svg()), 0o644); err != nil {
			return fmt.Errorf("--svg: %w", err)
		}
	}
	return nil
}

// checkWritable reports why path could not be written at the end of a run, checked
// before it so that a run is not lost to a typo. An existing file is left as it is,
// and no new one is left behind.
func checkWritable(path string) error {
	if st, err := os.Stat(path); err == nil {
		if st.IsDir() {
			return fmt.Errorf("%s is a directory", path)
		}
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		return f.Close()
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	f.Close()
	return os.Remove(path)
}

func domainNames(rep *benchReport) []string {
	var names []string
	for k := range rep.Domains {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

func printBench(w io.Writer, rep *benchReport) {
	mean := 0.0
	if rep.Prompts > 0 {
		mean = float64(rep.SpecTokens+rep.PlainTokens) / float64(2*rep.Prompts)
	}
	fmt.Fprintf(w, "%d prompts × %d, up to %d tokens (%.1f generated on average), temperature %g%s, mode %s%s\n\n", rep.Prompts/rep.Repeats, rep.Repeats,
		rep.MaxTokens, mean, rep.Temperature, seedNote(rep.Temperature, rep.Seed), rep.Mode, formatNote(rep.ResponseFormat))
	fmt.Fprintf(w, "%-12s %10s %10s %8s %10s %10s %10s %11s %9s\n", "domain", "spec tok/s", "plain tok/s", "speedup", "accepted", "acc/round", "round trip", "from lookup", "identical")
	row := func(name string, f *benchFigures) {
		fromLookup := 0.0
		if f.SpecTokens > 0 {
			fromLookup = float64(f.LookupAccepted) / float64(f.SpecTokens)
		}
		fmt.Fprintf(w, "%-12s %10.1f %10.1f %7.2fx %9.1f%% %10.2f %8.2fms %10.1f%% %6d/%d\n", name, f.SpecTokensPerSecond, f.PlainTokensPerSecond,
			f.Speedup, 100*f.AcceptanceRate, f.MeanAcceptedPerRound, 1000*f.MeanRoundTripSeconds, 100*fromLookup, f.IdenticalOutputs, f.Prompts)
	}
	for _, d := range domainNames(rep) {
		row(d, rep.Domains[d])
	}
	row("total", &rep.benchFigures)
}

// benchSVG draws grouped bars (speculative and plain tokens per second) per domain,
// with the speedup above each group.
func benchSVG(rep *benchReport) string {
	names := append(domainNames(rep), "total")
	fig := func(n string) *benchFigures {
		if n == "total" {
			return &rep.benchFigures
		}
		return rep.Domains[n]
	}
	top := 0.0
	for _, n := range names {
		top = max(top, fig(n).SpecTokensPerSecond, fig(n).PlainTokensPerSecond)
	}
	top *= 1.15
	if top == 0 {
		top = 1
	}
	const W, H, left, bottom, plotH = 760, 360, 60, 60, 250
	groupW := float64(W-left-20) / float64(len(names))
	var b strings.Builder
	svgStart(&b, W, H, left, fmt.Sprintf("specd: tokens per second, speculation on vs off (%d tokens, T=%g)", rep.MaxTokens, rep.Temperature))
	y0 := float64(H - bottom)
	svgYGrid(&b, left, W-20, y0, plotH, top)
	for i, n := range names {
		f := fig(n)
		x := float64(left) + groupW*float64(i) + groupW*0.15
		bw := groupW * 0.33
		for j, v := range []float64{f.SpecTokensPerSecond, f.PlainTokensPerSecond} {
			h := plotH * v / top
			color := []string{specColor, plainColor}[j]
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", x+float64(j)*bw, y0-h, bw, h, color)
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-weight="bold">%.2f×</text>`+"\n", x+bw, y0-plotH*max(f.SpecTokensPerSecond, f.PlainTokensPerSecond)/top-6, f.Speedup)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x+bw, y0+16, xmlText(n))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#555">%.0f%% acc.</text>`+"\n", x+bw, y0+32, 100*f.AcceptanceRate)
	}
	svgLegends(&b, left, H-18)
	b.WriteString("</svg>\n")
	return b.String()
}

// The colours of the two modes in every bench chart.
const (
	specColor  = "#2b6cb0"
	plainColor = "#a0aec0"
)

// svgStart opens an SVG document of w × h pixels: white background, title at x = left.
func svgStart(b *strings.Builder, w, h, left int, title string) {
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", w, h)
	fmt.Fprintf(b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(b, `<text x="%d" y="20" font-size="15" font-weight="bold">%s</text>`+"\n", left, xmlText(title))
}

// xmlText escapes s for XML character data, replacing the characters XML cannot carry
// at all (most control characters, U+FFFE) with U+FFFD: a domain name comes from the
// prompts file.
func xmlText(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s)) // a strings.Builder does not fail
	return b.String()
}

// svgYGrid draws five labelled grid lines from 0 at y0 up to top at y0 - plotH,
// between x = left and x = right.
func svgYGrid(b *strings.Builder, left, right int, y0, plotH, top float64) {
	for i := 0; i <= 4; i++ {
		v := top * float64(i) / 4
		y := y0 - plotH*float64(i)/4
		fmt.Fprintf(b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end">%.0f</text>`+"\n", left, right, y, y, left-6, y+4, v)
	}
}

// svgLegends writes the legend of the two modes, starting at (x, y).
func svgLegends(b *strings.Builder, x, y int) {
	for i, l := range []struct{ color, label string }{{specColor, "speculative (draft + verifier)"}, {plainColor, "plain (verifier alone)"}} {
		fmt.Fprintf(b, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n", x+230*i, y, l.color, x+230*i+16, y+10, l.label)
	}
}
