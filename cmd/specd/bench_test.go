package main

import (
	"bufio"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/auth"
)

func TestConcurrencyListSet(t *testing.T) {
	for _, c := range []struct {
		in   string
		want concurrencyList
	}{
		{"1", concurrencyList{1}},
		{"1,2,4,8,16,32,64", concurrencyList{1, 2, 4, 8, 16, 32, 64}},
		{" 8, 2 ", concurrencyList{8, 2}},
	} {
		var got concurrencyList
		if err := got.Set(c.in); err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("Set(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	// A bad list is a one-line usage error, before any connection is made.
	for _, bad := range []string{"", "0", "a", "1,,2", "1,2,1", "-1", "2.5", "4097"} {
		var l concurrencyList
		if err := l.Set(bad); err == nil {
			t.Errorf("Set(%q) = nil, want an error", bad)
		}
		_, stderr, code := run(t, "bench", "--addr", "127.0.0.1:1", "--concurrency", bad)
		if code != 2 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("bench --concurrency %q: exit %d, stderr %q; want exit 2 and one line", bad, code, stderr)
		}
	}
	for _, args := range [][]string{
		{"--concurrency", "1", "--repeat", "0"},
		{"--requests", "4"},
		{"--check-solo"},
		{"--concurrency", "1", "--requests", "-1"},
		// Fewer requests than clients: the level would never run at its concurrency.
		{"--concurrency", "1,4", "--requests", "2"},
		// A chart that could not be written, found out before the run, not after it.
		{"--svg", filepath.Join(t.TempDir(), "no-such-dir", "load.svg")},
		{"--concurrency", "1", "--svg", t.TempDir()},
		{"--concurrency", "1", "--check-solo", "--temp", "0.8"},
	} {
		_, stderr, code := run(t, append([]string{"bench", "--addr", "127.0.0.1:1"}, args...)...)
		if code != 2 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("bench %q: exit %d, stderr %q; want exit 2 and one line", args, code, stderr)
		}
	}
}

func TestPercentile(t *testing.T) {
	for _, c := range []struct {
		xs   []float64
		p    float64
		want float64
	}{
		{nil, 50, 0},
		{[]float64{7}, 99, 7},
		{[]float64{3, 1, 2}, 50, 2},
		{[]float64{1, 2, 3, 4}, 50, 2.5},
		{[]float64{4, 3, 2, 1}, 0, 1},
		{[]float64{1, 2, 3, 4}, 100, 4},
		{[]float64{0, 10}, 99, 9.9}, // numpy.percentile([0, 10], 99)
		{[]float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 99, 9.91},
	} {
		xs := append([]float64(nil), c.xs...)
		if got := percentile(c.xs, c.p); abs(got-c.want) > 1e-9 {
			t.Errorf("percentile(%v, %v) = %v, want %v", c.xs, c.p, got, c.want)
		}
		if !reflect.DeepEqual(xs, c.xs) {
			t.Errorf("percentile(%v) sorted its argument", xs)
		}
	}
}

func abs(x float64) float64 { return max(x, -x) }

func TestCodeName(t *testing.T) {
	for c, want := range map[codes.Code]string{codes.OK: "OK", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
		codes.Unavailable: "UNAVAILABLE", codes.DeadlineExceeded: "DEADLINE_EXCEEDED", codes.InvalidArgument: "INVALID_ARGUMENT"} {
		if got := codeName(c); got != want {
			t.Errorf("codeName(%v) = %q, want %q", c, got, want)
		}
	}
}

func TestSummarize(t *testing.T) {
	ok := func(prompt, tokens int, lat, ttft float64, ids ...int32) loadOutcome {
		return loadOutcome{prompt: prompt, res: generateResult{OutputIDs: ids, Tokens: tokens, WallSeconds: lat,
			firstChunk: time.Duration(ttft * float64(time.Second)), Rounds: 2, Drafted: 8, Accepted: 6,
			PromptTokens: 40 + prompt, CachedPromptTokens: 39 * prompt}}
	}
	outs := []loadOutcome{
		ok(0, 10, 1, 0.1, 5, 6),
		ok(1, 20, 3, 0.3, 7),
		{prompt: 0, err: status.Error(codes.ResourceExhausted, "queue full")},
		{prompt: 1, err: status.Error(codes.ResourceExhausted, "queue full")},
		{prompt: 0, err: errors.New("stream ended without a final message")},
	}
	solo := [][]int32{{5, 6}, {7, 8}}
	acc, perRound := 0.75, 3.0
	want := loadRun{Requests: 5, Completed: 2, Tokens: 30, WallSeconds: 2, TokensPerSecond: 15, LatencyP50: 2, LatencyP99: 2.98,
		TTFTP50: 0.2, TTFTP99: 0.298, PromptTokens: 81, CachedPromptTokens: 39, Errors: map[string]int{"RESOURCE_EXHAUSTED": 2, "UNKNOWN": 1},
		AcceptanceRate: &acc, MeanAcceptedPerRound: &perRound, SoloChecked: 2, SoloMismatches: 1}
	got := summarize(outs, 2*time.Second, true, solo)
	// The percentiles interpolate: compare the floats within rounding, the rest exactly.
	approx := func(r *loadRun) []*float64 {
		return []*float64{&r.WallSeconds, &r.TokensPerSecond, &r.LatencyP50, &r.LatencyP99, &r.TTFTP50, &r.TTFTP99}
	}
	for i, g := range approx(&got) {
		if w := approx(&want)[i]; abs(*g-*w) > 1e-9 {
			t.Errorf("summarize: float field %d = %v, want %v", i, *g, *w)
		}
		*g = *approx(&want)[i]
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("summarize = %+v, want %+v", got, want)
	}
	plain := summarize(outs, 2*time.Second, false, nil)
	if plain.AcceptanceRate != nil || plain.SoloChecked != 0 {
		t.Errorf("summarize(plain, no solo) = acceptance %v, %d checked; want nil, 0", plain.AcceptanceRate, plain.SoloChecked)
	}
}

// startUp runs `specd up` in this process on a free loopback port, with the real specd
// pair (and args, more flags of up), and returns the router's address once it has learnt
// both models. The test's cleanup stops it and checks that nothing is left running.
func startUp(t *testing.T, args ...string) string { return startUpWith(t, "", args...) }

// startUpWith is startUp with more flags for up, waiting for the models with the API
// key apiKey ("" for none).
func startUpWith(t *testing.T, apiKey string, flags ...string) string {
	t.Helper()
	a, _ := startUpLogged(t, apiKey, flags...)
	return a
}

// startUpLogged is startUpWith that also returns what up has logged so far (at the
// --log-level the flags set: error unless they say otherwise).
func startUpLogged(t *testing.T, apiKey string, flags ...string) (string, func() string) {
	t.Helper()
	var mu sync.Mutex
	var logged strings.Builder
	logs := func() string {
		mu.Lock()
		defer mu.Unlock()
		return logged.String()
	}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		code := realMain(ctx, append([]string{"up", "--listen", "127.0.0.1:0", "--log-level", "error", "--kv-budget", "64000000"}, flags...), io.Discard, pw)
		pw.Close()
		done <- code
	}()
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			mu.Lock()
			logged.WriteString(sc.Text() + "\n")
			mu.Unlock()
			const mark = "serving specd.v1.GenerationService on "
			if _, rest, ok := strings.Cut(sc.Text(), mark); ok {
				a, _, _ := strings.Cut(rest, " ")
				addr <- a
			}
		}
		io.Copy(io.Discard, pr)
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("up: exit %d", code)
		}
		goleak.VerifyNone(t)
	})
	var a string
	select {
	case a = <-addr:
	case code := <-done:
		done <- code
		t.Fatalf("up: exit %d before serving", code)
	case <-time.After(time.Minute):
		t.Fatal("up: not serving after a minute")
	}
	var dial []grpc.DialOption
	if apiKey != "" {
		dial = append(dial, grpc.WithPerRPCCredentials(auth.Bearer(apiKey)))
	}
	cc, err := services.Dial(a, dial...)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c := specdv1.NewGenerationServiceClient(cc)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := c.ListModels(ctx, &specdv1.ListModelsRequest{})
		if err == nil && len(resp.GetModels()) >= 2 {
			return a, logs
		}
		if time.Now().After(deadline) {
			t.Fatalf("router never listed verifier and draft: %v %v", resp, err)
		}
	}
}

// TestBenchConcurrency runs the load test against `specd up`: every level and mode
// completes its requests without errors, and greedy outputs under load are those of
// each prompt run alone. Then the per-prompt bench, against the same servers.
func TestBenchConcurrency(t *testing.T) {
	addr := startUp(t)
	svg := filepath.Join(t.TempDir(), "load.svg")
	stdout, stderr, code := run(t, "bench", "--addr", addr, "--concurrency", "1,2", "--requests", "4", "-n", "8", "--json",
		"--check-solo", "--svg", svg)
	if code != 0 {
		t.Fatalf("bench: exit %d: %s", code, stderr)
	}
	var rep struct {
		Addr        string  `json:"addr"`
		Verifier    string  `json:"verifier"`
		Draft       string  `json:"draft"`
		Temperature float64 `json:"temperature"`
		Seed        uint64  `json:"seed"`
		Prompts     int     `json:"prompts"`
		MaxTokens   int     `json:"max_tokens"`
		CheckSolo   bool    `json:"check_solo"`
		Levels      []struct {
			Concurrency int                        `json:"concurrency"`
			Speedup     *float64                   `json:"speedup"`
			Speculative map[string]json.RawMessage `json:"speculative"`
			Plain       map[string]json.RawMessage `json:"plain"`
		} `json:"levels"`
	}
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("bench --json: %v: %s", err, stdout)
	}
	// Draft may be empty: the verifier opens no draft while it measures plain decoding
	// faster.
	if rep.Addr != addr || rep.Verifier == "" || rep.MaxTokens != 8 || !rep.CheckSolo || rep.Prompts < 1 || len(rep.Levels) != 2 {
		t.Fatalf("bench --json = %s", stdout)
	}
	for i, lv := range rep.Levels {
		if lv.Concurrency != []int{1, 2}[i] || lv.Speedup == nil {
			t.Errorf("level %d: concurrency %d, speedup %v; want %d and a speedup", i, lv.Concurrency, lv.Speedup, []int{1, 2}[i])
		}
		for mode, r := range map[string]map[string]json.RawMessage{"speculative": lv.Speculative, "plain": lv.Plain} {
			var got loadRun
			raw, _ := json.Marshal(r)
			if err := json.Unmarshal(raw, &got); err != nil {
				t.Fatal(err)
			}
			keys := []string{"requests", "completed", "tokens", "wall_seconds", "tokens_per_second", "latency_p50_seconds",
				"latency_p99_seconds", "ttft_p50_seconds", "ttft_p99_seconds", "prompt_tokens", "cached_prompt_tokens", "errors", "solo_checked", "solo_mismatches"}
			if mode == "speculative" {
				keys = append(keys, "acceptance_rate", "mean_accepted_per_round")
			}
			for _, k := range keys {
				if _, ok := r[k]; !ok {
					t.Errorf("concurrency %d %s: no %q", lv.Concurrency, mode, k)
				}
			}
			if len(r) != len(keys) {
				t.Errorf("concurrency %d %s: keys %v, want %v", lv.Concurrency, mode, r, keys)
			}
			if got.Requests != 4 || got.Completed != 4 || len(got.Errors) != 0 || got.TokensPerSecond <= 0 || got.Tokens <= 0 ||
				got.LatencyP50 <= 0 || got.LatencyP99 < got.LatencyP50 || got.TTFTP50 <= 0 || got.TTFTP50 > got.LatencyP50 {
				t.Errorf("concurrency %d %s = %s", lv.Concurrency, mode, raw)
			}
			// --check-solo ran every prompt alone first, and a repeated prompt is
			// computed from its last token: the cache held all the others.
			if got.CachedPromptTokens != got.PromptTokens-got.Completed {
				t.Errorf("concurrency %d %s: %d of %d prompt tokens cached, want all but each request's last", lv.Concurrency, mode, got.CachedPromptTokens, got.PromptTokens)
			}
			if got.SoloChecked != 4 || got.SoloMismatches != 0 {
				t.Errorf("concurrency %d %s: %d of %d outputs differ from the prompt run alone; want 0 of 4",
					lv.Concurrency, mode, got.SoloMismatches, got.SoloChecked)
			}
		}
	}
	b, err := os.ReadFile(svg)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Polylines []struct {
			Points string `xml:"points,attr"`
		} `xml:"polyline"`
	}
	if err := xml.Unmarshal(b, &doc); err != nil || len(doc.Polylines) != 2 || len(strings.Fields(doc.Polylines[0].Points)) != 2 {
		t.Errorf("svg: %v, %+v; want two lines of two points", err, doc)
	}

	// Without --concurrency, bench is the per-prompt comparison it was.
	prompts := filepath.Join(t.TempDir(), "prompts.jsonl")
	if err := os.WriteFile(prompts, []byte(`{"id":"a","domain":"x","prompt":"Once upon a time"}`+"\n"+`{"id":"b","prompt":"The king said"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var per benchReport
	stdout = benchJSON(t, &per, "--addr", addr, "--prompts", prompts, "-n", "8")
	if per.Prompts != 2 || per.IdenticalOutputs != 2 || per.SpecTokensPerSecond <= 0 || len(per.Domains) != 2 {
		t.Errorf("bench --json (per prompt) = %s", stdout)
	}
}

// benchJSON runs bench --json with args, decodes its report into rep and returns it as
// printed.
func benchJSON(t *testing.T, rep any, args ...string) string {
	t.Helper()
	stdout, stderr, code := run(t, append([]string{"bench", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("bench %q: exit %d: %s", args, code, stderr)
	}
	if err := json.Unmarshal([]byte(stdout), rep); err != nil {
		t.Fatalf("bench %q: %v: %s", args, err, stdout)
	}
	return stdout
}

// TestBenchModesSeeTheSameCache: whichever mode runs a prompt first must not pay its
// prefill while the other finds the prompt in the verifier's prefix cache. Without
// --check-solo (whose solo runs fill the cache), on prompts the server has not seen,
// both modes of a load level, and both runs of each prompt in the per-prompt bench,
// find every prompt token but the last cached.
func TestBenchModesSeeTheSameCache(t *testing.T) {
	addr := startUp(t)
	prompts := filepath.Join(t.TempDir(), "prompts.jsonl")
	var lines []string
	for i, p := range []string{"The little dog ran to the", "A girl named Sue had a red", "Tom and his dad went to the big", "One morning the cat saw a"} {
		lines = append(lines, fmt.Sprintf(`{"id":"p%d","domain":"d%d","prompt":%q}`, i, i%2, p))
	}
	if err := os.WriteFile(prompts, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var load loadReport
	if stdout := benchJSON(t, &load, "--addr", addr, "--prompts", prompts, "--concurrency", "1", "--requests", "4", "-n", "4"); len(load.Levels) != 1 {
		t.Fatalf("bench --concurrency --json: %s", stdout)
	}
	for mode, r := range map[string]loadRun{"speculative": load.Levels[0].Speculative, "plain": load.Levels[0].Plain} {
		if r.Completed != 4 || r.CachedPromptTokens != r.PromptTokens-r.Completed {
			t.Errorf("load %s: %d requests completed, %d of %d prompt tokens cached; want 4, all but each request's last", mode, r.Completed, r.CachedPromptTokens, r.PromptTokens)
		}
	}

	// The per-prompt bench, on prompts again unseen.
	for i := range lines {
		lines[i] = strings.Replace(lines[i], `"prompt":"`, `"prompt":"Later, `, 1)
	}
	if err := os.WriteFile(prompts, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var per benchReport
	benchJSON(t, &per, "--addr", addr, "--prompts", prompts, "-n", "4")
	for name, f := range per.Domains {
		if want := f.PromptTokens - f.Prompts; f.SpecCachedPromptTokens != want || f.PlainCachedPromptTokens != want {
			t.Errorf("per-prompt domain %s: %d (spec) and %d (plain) of %d prompt tokens cached; want %d each", name,
				f.SpecCachedPromptTokens, f.PlainCachedPromptTokens, f.PromptTokens, want)
		}
	}
}

// TestBenchSVGWellFormed: the charts are well-formed XML whatever the report holds: a
// domain name (from the prompts file, untrusted) with markup or control characters,
// which XML cannot carry at all; no level, one level, zero throughput.
func TestBenchSVGWellFormed(t *testing.T) {
	parse := func(name, doc string) []string {
		t.Helper()
		var d struct {
			Texts []string `xml:"text"`
		}
		if err := xml.Unmarshal([]byte(doc), &d); err != nil {
			t.Errorf("%s: %v:\n%s", name, err, doc)
		}
		return d.Texts
	}
	for _, domain := range []string{"a\x01b", "<x>&\"'", "tab\tnew\nline", "nul\x00", "\ufffe"} {
		rep := benchReport{benchFigures: benchFigures{Prompts: 1, SpecTokensPerSecond: 3, PlainTokensPerSecond: 2, Speedup: 1.5},
			MaxTokens: 8, Repeats: 1, Domains: map[string]*benchFigures{domain: {Prompts: 1}}}
		// The title, five grid labels, three labels under each of two groups, two legends.
		if texts := parse(fmt.Sprintf("benchSVG(domain %q)", domain), benchSVG(&rep)); len(texts) != 14 {
			t.Errorf("benchSVG(domain %q): %d texts %q, want 14", domain, len(texts), texts)
		}
	}
	for _, levels := range [][]loadLevel{nil, {{Concurrency: 1}}, {{Concurrency: 1}, {Concurrency: 4096}}} {
		parse(fmt.Sprintf("loadSVG(%d levels)", len(levels)), loadSVG(&loadReport{Levels: levels}))
	}
}

// FuzzReadPrompts: a prompts file either reads as prompts that each have text and a
// domain, or is a usage error naming the file; it never panics.
func FuzzReadPrompts(f *testing.F) {
	f.Add([]byte(`{"id":"a","domain":"x","prompt":"Once upon a time"}` + "\n\n" + `{"prompt":"The king said"}`))
	f.Add([]byte(`{"prompt":""}`))
	f.Add([]byte(`{"prompt":"a"}` + "\n" + `[1,2]`))
	f.Add([]byte("\xff\xfe"))
	f.Add([]byte(" \n\t\n"))
	f.Add([]byte(`{"prompt":"a\u0000b","domain":"\u0001"}`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "prompts.jsonl")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		ps, err := readPrompts(path)
		if err != nil {
			if !errors.As(err, new(usageError)) || !strings.Contains(err.Error(), path) {
				t.Fatalf("readPrompts(%q) = %v, want a usage error naming the file", data, err)
			}
			return
		}
		if len(ps) == 0 {
			t.Fatalf("readPrompts(%q) = no prompts and no error", data)
		}
		for _, p := range ps {
			if p.Prompt == "" || p.Domain == "" {
				t.Fatalf("readPrompts(%q): prompt %+v", data, p)
			}
		}
	})
}

// TestReadPromptsLongLine: a line past the reader's 16 MiB is an error naming the file.
func TestReadPromptsLongLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "prompts.jsonl")
	if err := os.WriteFile(path, []byte(`{"prompt":"`+strings.Repeat("a", 1<<24)+`"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readPrompts(path); err == nil || !errors.As(err, new(usageError)) || !strings.Contains(err.Error(), path) {
		t.Errorf("readPrompts(a 16 MiB line) = %v, want a usage error naming the file", err)
	}
}

// TestLoadLevelsRunTheSamePrompts: by default every level sends each prompt equally
// often, so that levels differ in load and not in the mix of prompts (whose acceptance
// runs from 0 to 100% by domain): with 8 requests at one client and 32 at sixteen, 5
// prompts were sent 2, 2, 2, 1, 1 and 7, 7, 6, 6, 6 times. Every client still sends at
// least two requests, and a --requests given is kept.
func TestLoadLevelsRunTheSamePrompts(t *testing.T) {
	ps := []benchPrompt{{ID: "a", Prompt: "a"}, {ID: "b", Prompt: "b"}, {ID: "c", Prompt: "c"}, {ID: "d", Prompt: "d"}, {ID: "e", Prompt: "e"}}
	for _, c := range []struct {
		levels   []int
		requests int
		want     []int // requests per level
		even     bool
	}{
		{[]int{1, 16}, 0, []int{10, 35}, true},
		{[]int{2, 3}, 0, []int{10, 10}, true},
		{[]int{4}, 7, []int{7}, false},
	} {
		var mu sync.Mutex
		sent := map[bool]map[string]int{}
		cfg := loadConfig{levels: c.levels, requests: c.requests, prompts: ps,
			run: func(ctx context.Context, p benchPrompt, spec bool) (generateResult, error) {
				mu.Lock()
				defer mu.Unlock()
				if sent[spec] == nil {
					sent[spec] = map[string]int{}
				}
				sent[spec][p.ID]++
				return generateResult{Tokens: 1, WallSeconds: 0.001}, nil
			}}
		var rep loadReport
		for k, lv := range c.levels {
			sent = map[bool]map[string]int{}
			cfg.levels = []int{lv}
			rep.Levels = nil
			if err := benchLoad(t.Context(), cfg, &rep); err != nil {
				t.Fatal(err)
			}
			for _, spec := range []bool{true, false} {
				counts := slices.Collect(maps.Values(sent[spec]))
				total := 0
				for _, n := range counts {
					total += n
				}
				if total != c.want[k] || rep.Levels[0].Plain.Requests != c.want[k] {
					t.Errorf("levels %v --requests %d: concurrency %d sent %d requests, want %d", c.levels, c.requests, lv, total, c.want[k])
				}
				if c.even && (len(counts) != len(ps) || slices.Min(counts) != slices.Max(counts)) {
					t.Errorf("levels %v: concurrency %d (spec %v) sent the prompts %v times, want each as often", c.levels, lv, spec, sent[spec])
				}
			}
		}
	}
}

// TestLoadRounds: with --repeat R each level runs R rounds of both modes, the mode that
// goes first alternating by level and by round; the level's figures pool the rounds,
// and each round's speedup is reported.
func TestLoadRounds(t *testing.T) {
	ps := []benchPrompt{{ID: "a", Prompt: "a"}, {ID: "b", Prompt: "b"}}
	var mu sync.Mutex
	var order []bool // mode of each run of 4 requests, in order (spec true)
	runs := 0
	cfg := loadConfig{levels: []int{1, 2}, requests: 4, rounds: 3, prompts: ps,
		run: func(ctx context.Context, p benchPrompt, spec bool) (generateResult, error) {
			mu.Lock()
			defer mu.Unlock()
			if runs%4 == 0 {
				order = append(order, spec)
			}
			runs++
			// Speculative requests take 1 ms for 2 tokens, plain 1 ms for 1.
			time.Sleep(time.Millisecond)
			if spec {
				return generateResult{Tokens: 2, WallSeconds: 0.001}, nil
			}
			return generateResult{Tokens: 1, WallSeconds: 0.001}, nil
		}}
	var rep loadReport
	if err := benchLoad(t.Context(), cfg, &rep); err != nil {
		t.Fatal(err)
	}
	// Level 0: S P, P S, S P; level 1: P S, S P, P S.
	want := []bool{true, false, false, true, true, false, false, true, true, false, false, true}
	if !slices.Equal(order, want) {
		t.Errorf("modes in order %v, want %v", order, want)
	}
	for _, lv := range rep.Levels {
		if lv.Speculative.Requests != 12 || lv.Plain.Requests != 12 {
			t.Errorf("concurrency %d: %d and %d requests, want 3 rounds of 4 in each mode", lv.Concurrency, lv.Speculative.Requests, lv.Plain.Requests)
		}
		// The pooled figures, not the clock: which mode was faster depends on how the
		// shared machine scheduled the sleeps.
		sp, pl := lv.Speculative, lv.Plain
		if sp.Tokens != 24 || pl.Tokens != 12 || sp.LatencyP50 != 0.001 || pl.LatencyP99 != 0.001 {
			t.Errorf("concurrency %d: tokens %d and %d, latency p50 %v and p99 %v; want 24 and 12, the requests' 0.001 s pooled",
				lv.Concurrency, sp.Tokens, pl.Tokens, sp.LatencyP50, pl.LatencyP99)
		}
		if want := (float64(sp.Tokens) / sp.WallSeconds) / (float64(pl.Tokens) / pl.WallSeconds); math.Abs(lv.Speedup-want) > 1e-9*want {
			t.Errorf("concurrency %d: speedup %v, want %v: the tokens of all rounds over their wall times summed", lv.Concurrency, lv.Speedup, want)
		}
		if len(lv.RoundSpeedups) != 3 || slices.Min(lv.RoundSpeedups) <= 0 {
			t.Errorf("concurrency %d: speedups by round %v; want three, above 0", lv.Concurrency, lv.RoundSpeedups)
		}
	}
	var b strings.Builder
	printLoad(&b, &rep)
	if !strings.Contains(b.String(), "speedup by round") || !strings.Contains(b.String(), "concurrency 2: ") {
		t.Errorf("report without the speedup of each round:\n%s", b.String())
	}
}

// TestLoadRoundsOneSpeedupEach: round_speedups has an entry for every round, 0 for a
// round whose plain run made no tokens (as speedup is 0 then), so that entry i is round
// i+1's and the report still lists them.
func TestLoadRoundsOneSpeedupEach(t *testing.T) {
	ps := []benchPrompt{{ID: "a", Prompt: "a"}}
	var mu sync.Mutex
	plainRuns := 0
	cfg := loadConfig{levels: []int{1}, requests: 2, rounds: 3, prompts: ps,
		run: func(ctx context.Context, p benchPrompt, spec bool) (generateResult, error) {
			mu.Lock()
			defer mu.Unlock()
			if spec {
				return generateResult{Tokens: 2, WallSeconds: 0.001}, nil
			}
			plainRuns++
			if plainRuns <= 2 { // the first round's plain run fails throughout
				return generateResult{}, status.Error(codes.ResourceExhausted, "queue full")
			}
			return generateResult{Tokens: 1, WallSeconds: 0.001}, nil
		}}
	var rep loadReport
	if err := benchLoad(t.Context(), cfg, &rep); err != nil {
		t.Fatal(err)
	}
	rs := rep.Levels[0].RoundSpeedups
	if len(rs) != 3 || rs[0] != 0 || rs[1] <= 0 || rs[2] <= 0 {
		t.Errorf("round speedups %v, want 3: 0 for the first round (plain made no tokens), then above 0", rs)
	}
	var b strings.Builder
	printLoad(&b, &rep)
	if !strings.Contains(b.String(), "speedup by round") {
		t.Errorf("report without the speedup of each round:\n%s", b.String())
	}
}

// TestBenchReportsSeed: a sampled run can be repeated only with its seed, which bench
// picks at random unless --seed gives one: both reports carry it.
func TestBenchReportsSeed(t *testing.T) {
	addr := startUp(t)
	for _, args := range [][]string{{"--seed", "7"}, nil} {
		args = append(args, "--addr", addr, "-n", "2", "--temp", "0.7")
		var per struct {
			Seed *uint64 `json:"seed"`
		}
		benchJSON(t, &per, args...)
		var load struct {
			Seed *uint64 `json:"seed"`
		}
		benchJSON(t, &load, append(args, "--concurrency", "1", "--requests", "1")...)
		for name, got := range map[string]*uint64{"per-prompt": per.Seed, "load": load.Seed} {
			if got == nil || args[0] == "--seed" && *got != 7 {
				t.Errorf("bench %q (%s): seed %v, want it reported (7 when given)", args, name, got)
			}
		}
	}
}

// TestBenchReportsFormat: under --response-format the outputs end where their documents
// do, often far below -n; both reports say which format they ran under, and the
// per-prompt report how many tokens were generated, not only the limit.
func TestBenchReportsFormat(t *testing.T) {
	addr := startUp(t)
	args := []string{"--addr", addr, "-n", "24", "--response-format", "json_object"}
	var per struct {
		ResponseFormat string `json:"response_format"`
		SpecTokens     int    `json:"spec_tokens"`
		Prompts        int    `json:"prompts"`
	}
	benchJSON(t, &per, args...)
	var load struct {
		ResponseFormat string `json:"response_format"`
	}
	benchJSON(t, &load, append(args, "--concurrency", "1", "--requests", "1")...)
	if per.ResponseFormat != "json_object" || load.ResponseFormat != "json_object" {
		t.Errorf("bench --response-format json_object: response_format %q (per prompt), %q (load); want json_object in both", per.ResponseFormat, load.ResponseFormat)
	}
	stdout, stderr, code := run(t, append([]string{"bench"}, args...)...)
	if code != 0 {
		t.Fatalf("bench: exit %d: %s", code, stderr)
	}
	head, _, _ := strings.Cut(stdout, "\n")
	mean := fmt.Sprintf("%.1f", float64(per.SpecTokens)/float64(per.Prompts))
	if !strings.Contains(head, "response format json_object") || !strings.Contains(head, "up to 24 tokens") {
		t.Errorf("report header %q: want the format and the limit as a limit (up to 24 tokens)", head)
	}
	t.Logf("%s (the JSON run's mean: %s)", head, mean)
}
