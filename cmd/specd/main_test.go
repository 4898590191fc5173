package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/specd-dev/specd/gguf"
	"github.com/specd-dev/specd/grammar"
	"github.com/specd-dev/specd/internal/testmodels"
	speculationv1 "github.com/specd-dev/specd/proto/specd/speculation/v1"
	specdv1 "github.com/specd-dev/specd/proto/specd/v1"
	"github.com/specd-dev/specd/services"
	"github.com/specd-dev/specd/services/openaihttp"
)

func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := realMain(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), code
}

// TestQuantizeMatchesLlamaCpp: quantizing the F16 draft gives, tensor for tensor, the
// bytes of the Q8_0 and Q4_0 files llama.cpp made from it.
func TestQuantizeMatchesLlamaCpp(t *testing.T) {
	src := testmodels.ForTest(t, "specd-draft-f16.gguf")
	for _, c := range []struct{ typ, ref string }{{"q8_0", "specd-draft-q8_0.gguf"}, {"q4_0", "specd-draft-q4_0.gguf"}} {
		out := filepath.Join(t.TempDir(), "out.gguf")
		if _, stderr, code := run(t, "quantize", "-m", src, "-o", out, "--type", c.typ); code != 0 {
			t.Fatalf("quantize: exit %d: %s", code, stderr)
		}
		got, err := gguf.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		want, err := gguf.Open(testmodels.ForTest(t, c.ref))
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Tensors) != len(want.Tensors) {
			t.Fatalf("%s: %d tensors, want %d", c.typ, len(got.Tensors), len(want.Tensors))
		}
		for _, ti := range want.Tensors {
			gi, gd, err := got.Tensor(ti.Name)
			if err != nil {
				t.Fatalf("%s: %v", c.typ, err)
			}
			_, wd, _ := want.Tensor(ti.Name)
			if gi.Type != ti.Type || !bytes.Equal(gd, wd) {
				t.Errorf("%s: tensor %s: type %v, %d bytes differ from llama.cpp's %v", c.typ, ti.Name, gi.Type, len(gd), ti.Type)
			}
		}
		got.Close()
		want.Close()
	}
}

func TestRunJSONAndErrors(t *testing.T) {
	stdout, stderr, code := run(t, "run", "-m", "stories260K", "-p", "Once upon a time", "-n", "16", "--temp", "0", "--json")
	if code != 0 {
		t.Fatalf("run: exit %d: %s", code, stderr)
	}
	var res map[string]any
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("run --json: %v: %s", err, stdout)
	}
	for _, k := range []string{"prompt_ids", "output_ids", "text", "prefill_tokens_per_second", "decode_tokens_per_second", "model", "quant", "threads"} {
		if _, ok := res[k]; !ok {
			t.Errorf("run --json lacks %q", k)
		}
	}
	// llama2.c's greedy continuation of this prompt (shared/reference).
	if !strings.HasPrefix(res["text"].(string), ", there was a little girl named Lily") {
		t.Errorf("text = %q", res["text"])
	}
	// Without the warm-up, and with a KV budget of one block (too small for the warm-up
	// block and its timed passes, enough for this request), the output is the same.
	for _, extra := range [][]string{{"--no-warmup"}, {"--kv-budget", "90000"}} {
		args := append([]string{"run", "-m", "stories260K", "-p", "Once upon a time", "-n", "16", "--temp", "0", "--json"}, extra...)
		out, stderr, code := run(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", extra, code, stderr)
		}
		var r map[string]any
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("%v: %v: %s", extra, err, out)
		}
		if r["text"] != res["text"] {
			t.Errorf("%v: text %q, want %q", extra, r["text"], res["text"])
		}
	}
	// A bias as llama.cpp spells it (ID-BIAS) and as specd does (ID=BIAS) bans the
	// greedy story's first token alike.
	first := int(res["output_ids"].([]any)[0].(float64))
	for _, spelling := range []string{fmt.Sprintf("%d-100", first), fmt.Sprintf("%d=-100", first)} {
		out, stderr, code := run(t, "run", "-m", "stories260K", "-p", "Once upon a time", "-n", "4", "--temp", "0", "--json", "--logit-bias", spelling)
		var r struct {
			OutputIDs []int `json:"output_ids"`
		}
		if err := json.Unmarshal([]byte(out), &r); code != 0 || err != nil || len(r.OutputIDs) == 0 || r.OutputIDs[0] == first {
			t.Errorf("--logit-bias %s: exit %d, %s%s; want a first token other than %d", spelling, code, out, stderr, first)
		}
	}
	for _, args := range [][]string{
		{"run", "-m", "no-such-model", "-p", "x"},
		{"run", "-m", "", "-p", "x"},
		{"run", "-m", "stories260K", "-p", "x", "--threads", "0"},
		{"run", "-m", "stories260K", "-p", "x", "--bogus"},
		{"run", "-m", "stories260K", "-p", "x", "--quant", "q5_k"}, // read, not produced
		{"run", "-m", "stories260K", "-p", "x", "--quant", "q9_9"},
		{"run", "-m", "stories260K", "-p", "x", "--ctx-size", "513"},
		{"run", "-m", "stories260K", "-p", "x", "--ctx-size", "-1"},
		{"run", "-m", "stories260K", "-p", "x", "--logit-bias", "5"},
		{"run", "-m", "stories260K", "-p", "x", "--logit-bias", "5=101"},
		{"run", "-m", "stories260K", "-p", "x", "--logit-bias", "-5=1"},
		{"run", "-m", "stories260K", "-p", "x", "--logit-bias", "512=1"}, // outside the vocabulary of 512
		{"run", "-m", "stories260K", "-p", "x", "--stop-token-id", "512"},
		{"run", "-m", "stories260K", "-p", "x", "--stop-token-id", "-1"},
		{"run", "-m", "stories260K", "-p", "x", "--min-tokens", "-1"},
		{"run", "-m", "stories260K", "-p", "x", "-n", "4", "--min-tokens", "5"}, // more than -n, as the gRPC API refuses it
		{"score", "-m", "stories260K", "--ids", "1,x"},
		{"router", "--http-listen", "no-port"},
		{"router", "--http-listen", "127.0.0.1:0", "--http-max-body-bytes", "10"},
		{"up", "--http-listen", "no-port"},
		{"up", "--http-listen", "127.0.0.1:0", "--tool-call-parser", "mistral"},
		{"router", "--tool-call-parser", "hermes"},                                      // without --http-listen
		{"router", "--http-listen", "127.0.0.1:0", "--http-max-body-bytes", "20000000"}, // over --max-message-bytes
		{"nonsense"},

		{"router", "--http-listen", "127.0.0.1:0", "--http-cors-origins", "localhost:3000"},                          // no scheme
		{"up", "--http-cors-origins", "http://localhost:*"},                                                          // without --http-listen
		{"router", "--http-listen", "127.0.0.1:0", "--http-allowed-hosts", "chat.example.com:443"},                   // a port
		{"router", "--http-listen", "0.0.0.0:0", "--insecure-plaintext", "--http-allowed-hosts", "chat.example.com"}, // not loopback: no guard
	} {
		_, stderr, code := run(t, args...)
		if code != 2 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and one line", args, code, stderr)
		}
	}
}

func TestScoreJSON(t *testing.T) {
	stdout, stderr, code := run(t, "score", "-m", "stories260K", "--ids", "1,403,407,261,378", "--json")
	if code != 0 {
		t.Fatalf("score: exit %d: %s", code, stderr)
	}
	var res struct {
		Argmax     []int32   `json:"argmax"`
		Logprobs   []float64 `json:"logprobs"`
		Perplexity float64   `json:"perplexity"`
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Argmax) != 5 || len(res.Logprobs) != 4 || res.Perplexity <= 1 {
		t.Fatalf("score = %+v", res)
	}
	if res.Argmax[4] != 432 { // llama2.c's first generated token after "Once upon a time"
		t.Errorf("argmax after the prompt = %d, want 432", res.Argmax[4])
	}
}

// TestFlagSet: `up` gives the verifier one thread unless --threads was given, and an
// explicit --threads equal to the default counts as given.
func TestFlagSet(t *testing.T) {
	for _, c := range []struct {
		args []string
		want bool
	}{
		{nil, false},
		{[]string{"--kv-budget", "1000"}, false},
		{[]string{"--threads", "2"}, true},
		{[]string{"--threads=1"}, true},
		{[]string{"--threads", fmt.Sprint(min(2, runtime.NumCPU()))}, true}, // the default
	} {
		fs := flag.NewFlagSet("up", flag.ContinueOnError)
		var eo engineOptions
		eo.addFlags(fs, "m")
		if err := fs.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		if got := flagSet(fs, "threads"); got != c.want {
			t.Errorf("flagSet(%q, threads) = %v, want %v", c.args, got, c.want)
		}
	}
}

// TestVerifierQueueFlag: --queue must be positive; 0 or a negative count is a usage
// error at start-up, not the scheduler's default of 256 waiting requests.
func TestVerifierQueueFlag(t *testing.T) {
	for _, q := range []string{"0", "-3"} {
		// Were the flag taken, the verifier would serve until ctx ends.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var out, errb bytes.Buffer
		code := realMain(ctx, []string{"verifier", "--listen", "127.0.0.1:0", "--queue", q}, &out, &errb)
		cancel()
		if code != 2 || strings.Count(strings.TrimSpace(errb.String()), "\n") != 0 {
			t.Errorf("verifier --queue %s: exit %d, stderr %q; want exit 2 and one line", q, code, errb.String())
		}
	}
}

// TestRunBOSAsVocabularyAsks: `specd run` puts BOS before the prompt only when the
// vocabulary asks for it (tokenizer.ggml.add_bos_token), as llama.cpp does: Qwen2.5's
// files name a BOS token and set add_bos_token false.
func TestRunBOSAsVocabularyAsks(t *testing.T) {
	path := testmodels.WithMetadata(t, "specd-draft-f16.gguf", gguf.KV{Key: "tokenizer.ggml.add_bos_token", Value: gguf.NewBool(false)})
	for _, c := range []struct {
		model string
		bos   bool
	}{{testmodels.ForTest(t, "specd-draft-f16.gguf"), true}, {path, false}} {
		stdout, stderr, code := run(t, "run", "-m", c.model, "-p", "Once upon a time", "-n", "1", "--temp", "0", "--json", "--no-warmup")
		if code != 0 {
			t.Fatalf("run: exit %d: %s", code, stderr)
		}
		var res struct {
			PromptIDs []int32 `json:"prompt_ids"`
		}
		if err := json.Unmarshal([]byte(stdout), &res); err != nil {
			t.Fatalf("run --json: %v: %s", err, stdout)
		}
		if got := len(res.PromptIDs) > 0 && res.PromptIDs[0] == 1; got != c.bos {
			t.Errorf("%s: prompt ids %v: BOS first %v, want %v", filepath.Base(c.model), res.PromptIDs, got, c.bos)
		}
	}
}

// TestClientCountsBeyondUint32: counts the API carries as uint32 are refused when
// larger, not truncated — `generate -n 4294967296` became max_tokens 0 ("up to the
// context"), --gamma 4294967297 a gamma of 1, --breaker-failures 4294967296 a breaker
// that opens on the first failure. Each is a usage error before anything is dialled.
func TestClientCountsBeyondUint32(t *testing.T) {
	addr := freeAddr(t) // nothing listens there
	for _, args := range [][]string{
		{"generate", "--addr", addr, "-p", "x", "-n", "4294967296"},
		{"generate", "--addr", addr, "-p", "x", "--gamma", "4294967297"},
		{"generate", "--addr", addr, "-p", "x", "--max-gamma", "4294967296"},
		{"router", "--listen", addr, "--verifiers", addr, "--breaker-failures", "4294967296"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var out, errb bytes.Buffer
		code := realMain(ctx, args, &out, &errb)
		cancel()
		if code != 2 || strings.Count(strings.TrimSpace(errb.String()), "\n") != 0 {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and one line", args, code, errb.String())
		}
	}
}

// freeAddr is a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestUpRefusesServiceOnlyFlags: up wires its verifier to its own draft on loopback
// without Consul, so the verifier's flags for finding drafts and registering in Consul
// would do nothing there: each is a one-line usage error, never silently ignored (up
// --drafts "" once started speculating all the same). Bounded: a flag that is
// accepted starts up, which the context then stops.
func TestUpRefusesServiceOnlyFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--drafts", ""},
		{"--drafts", "127.0.0.1:7072"},
		{"--draft-discovery", "static"},
		{"--draft-discovery", "consul"},
		{"--advertise", "127.0.0.1:7071"},
		{"--consul", "127.0.0.1:8500"},
		{"--consul-token", "secret"},
		{"--consul-datacenter", "dc2"},
		{"--consul-check-tls-server-name", "specd"},
		{"--consul-check-tls-skip-verify"},
	} {
		checkRefused(t, append([]string{"up", "--listen", "127.0.0.1:0", "--log-level", "error", "--kv-budget", "64000000"}, args...), 2, args[0])
	}
}

// checkRefused runs specd with args, bounded in time (a command that is not refused
// serves until its context ends), and wants exit code and one line on stderr saying
// want.
func checkRefused(t *testing.T, args []string, code int, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	got := realMain(ctx, args, &out, &errb)
	if stderr := strings.TrimSpace(errb.String()); got != code || strings.Count(stderr, "\n") != 0 || !strings.Contains(stderr, want) {
		t.Errorf("specd %q: exit %d, stderr %q; want exit %d and one line saying %q", args, got, stderr, code, want)
	}
}

// TestClientTimeoutFlag: a --timeout that leaves no time is a usage error at start-up
// in every client command, not a request that fails with DEADLINE_EXCEEDED (exit 1).
func TestClientTimeoutFlag(t *testing.T) {
	for _, args := range [][]string{
		{"generate", "-p", "x", "--timeout", "0"},
		{"generate", "-p", "x", "--timeout", "-1s"},
		{"bench", "--timeout", "0"},
		{"bench", "--timeout", "-5m", "--concurrency", "1"},
		{"health", "--timeout", "0"},
	} {
		checkRefused(t, append(args, "--addr", "127.0.0.1:1"), 2, "--timeout")
	}
}

// TestUpDraftFlagErrors: a bad value of one of up's draft flags is refused naming that
// flag, not the name it has on specd draft (up --draft-threads 0 said "--threads 0",
// which in up is the verifier's flag), and a draft that cannot start says it is the
// draft.
func TestUpDraftFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--draft-depth", "0"}, 2, "--draft-depth 0"},
		{[]string{"--draft-branches", "9"}, 2, "--draft-branches 9"},
		{[]string{"--draft-threads", "0"}, 2, "--draft-threads 0"},
		{[]string{"--draft-quant", "q9"}, 2, "--draft-quant"},
		{[]string{"--draft-model", ""}, 2, "--draft-model"},
		{[]string{"--draft-max-streams-per-peer", "-1"}, 2, "--draft-max-streams-per-peer -1"},
		{[]string{"--kv-budget", "3"}, 2, "--kv-budget 3"},
		// Enough for the verifier's blocks, not for the draft's quarter: known once the
		// models are loaded, still a bad flag.
		{[]string{"--kv-budget", "1100000"}, 2, "--kv-budget 1100000 (the draft gets a quarter of it): draft: "},
	} {
		checkRefused(t, append([]string{"up", "--listen", "127.0.0.1:0", "--log-level", "error"}, c.args...), c.code, c.want)
	}
	// The last case fails the draft after the verifier started: up leaves nothing
	// running (its router waited for a draft that never became ready, and the
	// goroutine doing so outlived it).
	goleak.VerifyNone(t)
}

// TestStaticListsWithConsul: addresses given on the command line would be ignored
// under Consul discovery (the watch replaces them), so giving both is a usage error
// naming the list; the defaults, not given, do not count.
func TestStaticListsWithConsul(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"router", "--discovery", "consul", "--consul", "127.0.0.1:1", "--verifiers", "127.0.0.1:7071"}, "--verifiers"},
		{[]string{"router", "--discovery", "consul", "--consul", "127.0.0.1:1", "--drafts", ""}, "--drafts"},
		{[]string{"verifier", "--draft-discovery", "consul", "--consul", "127.0.0.1:1", "--drafts", "127.0.0.1:7072"}, "--drafts"},
	} {
		checkRefused(t, append(c.args, "--listen", "127.0.0.1:0", "--log-level", "error"), 2, c.want)
	}
}

// TestAdvertiseChecked: the address registered in Consul must be one others can dial,
// checked before a model loads (exit 2), not when registering after it (exit 1): an
// --advertise without a host or with an unspecified one or port 0, and, without
// --advertise, a --listen on all interfaces, which is what would be registered.
func TestAdvertiseChecked(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"draft", "--consul", "127.0.0.1:1", "--listen", "0.0.0.0:0", "--insecure-plaintext"}, "--advertise"},
		{[]string{"verifier", "--consul", "127.0.0.1:1", "--listen", ":7071", "--insecure-plaintext"}, "--advertise"},
		{[]string{"verifier", "--consul", "127.0.0.1:1", "--advertise", "0.0.0.0:7071"}, "--advertise"},
		{[]string{"draft", "--consul", "127.0.0.1:1", "--advertise", "10.0.0.5:0"}, "--advertise"},
		{[]string{"router", "--listen", "127.0.0.1:0", "--consul", "127.0.0.1:1", "--advertise", ":7070"}, "--advertise"},
		{[]string{"router", "--listen", "127.0.0.1:0", "--consul", "127.0.0.1:1", "--advertise", "[::]:7070"}, "--advertise"},
	} {
		checkRefused(t, append(c.args, "--log-level", "error"), 2, c.want)
	}
}

// TestMaxMessageBytesAloneIsAccepted: every service takes --max-message-bytes, but a
// router given a value under 4 MiB was refused for the default of a flag it was not
// given (--http-max-body-bytes 4194304 exceeds --max-message-bytes), front door or
// not. Unset, the body bound follows the message bound down; an explicit body bound
// over it is still refused.
func TestMaxMessageBytesAloneIsAccepted(t *testing.T) {
	for _, c := range []struct {
		args     []string
		wantBody int64 // 0: refused
	}{
		{[]string{"--max-message-bytes", "65536"}, 65536},
		{[]string{"--max-message-bytes", "65536", "--http-listen", "127.0.0.1:0"}, 65536},
		{[]string{"--http-listen", "127.0.0.1:0"}, openaihttp.DefaultMaxBodyBytes},
		{[]string{"--max-message-bytes", "65536", "--http-max-body-bytes", "4096"}, 4096},
		{[]string{"--max-message-bytes", "65536", "--http-max-body-bytes", "70000"}, 0},
	} {
		fs := flag.NewFlagSet("router", flag.ContinueOnError)
		var o routerOptions
		o.addFlags(fs)
		if err := fs.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		err := o.validate()
		switch {
		case c.wantBody == 0 && err == nil:
			t.Errorf("router %q: accepted, want a usage error", c.args)
		case c.wantBody != 0 && (err != nil || o.httpMaxBody != c.wantBody):
			t.Errorf("router %q: %v, body bound %d; want accepted with %d", c.args, err, o.httpMaxBody, c.wantBody)
		}
	}
}

// TestMaxRunningWithinMaxBatch: --max-running is documented as at most --max-batch; a
// larger value was taken and silently lowered. Unset, it is 64 or --max-batch when less.
func TestMaxRunningWithinMaxBatch(t *testing.T) {
	for _, c := range []struct {
		args []string
		want int // 0: refused
	}{
		{nil, 64},
		{[]string{"--max-batch", "32"}, 32},
		{[]string{"--max-running", "100", "--max-batch", "200"}, 100},
		{[]string{"--max-running", "200"}, 0},
		{[]string{"--max-running", "-1"}, 0},
	} {
		fs := flag.NewFlagSet("verifier", flag.ContinueOnError)
		var o verifierOptions
		o.addFlags(fs)
		if err := fs.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		err := o.validate()
		switch {
		case c.want == 0 && err == nil:
			t.Errorf("verifier %q: accepted with --max-running %d, want a usage error", c.args, o.maxRunning)
		case c.want != 0 && (err != nil || o.maxRunning != c.want):
			t.Errorf("verifier %q: %v, max-running %d; want accepted with %d", c.args, err, o.maxRunning, c.want)
		}
	}
}

// TestMaxMessageBytesFitsReflection: --max-message-bytes bounds what a server sends,
// server reflection's answers too, so at 4 KiB grpcurl could call nothing ("trying to
// send message larger than max (5618 vs. 4096)" for the public API's descriptors). The
// smallest bound taken must hold the largest answer — a service's file with every file
// it imports — with room for the protos to grow.
func TestMaxMessageBytesFitsReflection(t *testing.T) {
	fs := flag.NewFlagSet("router", flag.ContinueOnError)
	var o routerOptions
	o.addFlags(fs)
	if err := fs.Parse([]string{"--max-message-bytes", "4096"}); err != nil {
		t.Fatal(err)
	}
	if err := o.validate(); err == nil {
		t.Errorf("router --max-message-bytes 4096: accepted, want a usage error (reflection's answers do not fit)")
	}
	for _, fd := range []protoreflect.FileDescriptor{specdv1.File_specd_v1_generation_proto, speculationv1.File_specd_speculation_v1_speculation_proto} {
		seen := map[string]bool{}
		size := 0
		var add func(protoreflect.FileDescriptor)
		add = func(d protoreflect.FileDescriptor) {
			if seen[d.Path()] {
				return
			}
			seen[d.Path()] = true
			b, err := proto.Marshal(protodesc.ToFileDescriptorProto(d))
			if err != nil {
				t.Fatal(err)
			}
			size += len(b)
			for i := range d.Imports().Len() {
				add(d.Imports().Get(i).FileDescriptor)
			}
		}
		add(fd)
		if 4*size > minMessageBytes {
			t.Errorf("%s and its imports take %d bytes: want at most a quarter of the least --max-message-bytes, %d", fd.Path(), size, minMessageBytes)
		}
	}
}

// TestKVBudgetTooSmall: a --kv-budget under one KV block of the model is a bad flag —
// exit 2 and one line naming it, as the README promises for bad flags — not exit 1
// with a message about "kv cache budget" that names no flag (up: TestUpDraftFlagErrors).
func TestKVBudgetTooSmall(t *testing.T) {
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"verifier", "--listen", "127.0.0.1:0", "--drafts", "127.0.0.1:1", "--kv-budget", "100000"}, []string{"--kv-budget 100000"}},
		{[]string{"draft", "--listen", "127.0.0.1:0", "--kv-budget", "100000"}, []string{"--kv-budget 100000"}},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var out, errb bytes.Buffer
		code := realMain(ctx, append(c.args, "--log-level", "error"), &out, &errb)
		cancel()
		msg := strings.TrimSpace(errb.String())
		ok := code == 2 && !strings.Contains(msg, "\n")
		for _, w := range c.want {
			ok = ok && strings.Contains(msg, w)
		}
		if !ok {
			t.Errorf("%q: exit %d, stderr %q; want exit 2 and one line naming %q", c.args, code, msg, c.want)
		}
	}
}

// TestUpMissingDraftModel: a missing model is a one-line error and exit 2, the draft's
// under up too: up found it missing only once its verifier had loaded and logged that
// it was serving.
func TestUpMissingDraftModel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code := realMain(ctx, []string{"up", "--listen", "127.0.0.1:0", "--draft-model", "no-such-draft"}, &out, &errb)
	if msg := strings.TrimSpace(errb.String()); code != 2 || strings.Contains(msg, "\n") || !strings.Contains(msg, "no-such-draft") {
		t.Errorf("up --draft-model no-such-draft: exit %d, stderr %q; want exit 2 and one line naming it", code, msg)
	}
}

// TestScoreOneID: one id has an argmax but predicts nothing, so its perplexity is
// undefined: null in JSON and "-" in text, not 0 (a perplexity is at least 1).
func TestScoreOneID(t *testing.T) {
	stdout, stderr, code := run(t, "score", "-m", "stories260K", "--ids", "1", "--json")
	if code != 0 {
		t.Fatalf("score: exit %d: %s", code, stderr)
	}
	var res map[string]any
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatal(err)
	}
	if p, ok := res["perplexity"]; !ok || p != nil {
		t.Errorf("score --ids 1 --json: perplexity %v (present %v), want null", p, ok)
	}
	stdout, _, _ = run(t, "score", "-m", "stories260K", "--ids", "1")
	if !strings.Contains(stdout, "perplexity - over 0 predictions") {
		t.Errorf("score --ids 1: %q, want perplexity - over 0 predictions", stdout)
	}
}

// TestMetricsListenBusy: a --metrics-listen address that cannot be bound is refused as
// a --listen one is (exit 2, one line), not exit 1.
func TestMetricsListenBusy(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	checkRefused(t, []string{"router", "--listen", "127.0.0.1:0", "--verifiers", "127.0.0.1:1", "--drafts", "127.0.0.1:1",
		"--metrics-listen", busy.Addr().String(), "--log-level", "error"}, 2, "--metrics-listen "+busy.Addr().String())
}

// TestGenerateSeedWholeUint64: SamplingParams.seed is a uint64, and a Node or
// Python client sends seeds of 2^63 and above; `specd generate --seed` takes
// the same range, so that the CLI reproduces such a client's text (it took an
// int64 and refused them). -1 still picks a seed at random; any other
// negative value or a non-number is a one-line usage error.
func TestGenerateSeedWholeUint64(t *testing.T) {
	addr := startUp(t)
	cc, err := services.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	const seed = uint64(1<<64 - 1)
	s := seed
	want, err := specdv1.NewGenerationServiceClient(cc).Complete(context.Background(), &specdv1.GenerateRequest{
		Prompt: "Once upon a time", MaxTokens: 12, Sampling: &specdv1.SamplingParams{Temperature: 1, Seed: &s}})
	if err != nil {
		t.Fatal(err)
	}
	out, errs, code := run(t, "generate", "--addr", addr, "-p", "Once upon a time", "-n", "12", "--temp", "1",
		"--seed", strconv.FormatUint(seed, 10), "--json")
	if code != 0 {
		t.Fatalf("generate --seed %d: exit %d: %s", seed, code, errs)
	}
	var got struct {
		OutputIDs []int32 `json:"output_ids"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.OutputIDs, want.GetTokenIds()) {
		t.Errorf("generate --seed %d = %v, want the gRPC API's %v", seed, got.OutputIDs, want.GetTokenIds())
	}
	if _, errs, code := run(t, "generate", "--addr", addr, "-p", "x", "-n", "1", "--temp", "1", "--seed", "-1"); code != 0 {
		t.Errorf("generate --seed -1: exit %d (%s), want a random seed", code, errs)
	}
	for _, bad := range []string{"-2", "18446744073709551616", "seven"} {
		_, errs, code := run(t, "generate", "--addr", addr, "-p", "x", "--seed", bad)
		if code != 2 || strings.Count(strings.TrimSpace(errs), "\n") != 0 || !strings.Contains(errs, "seed") {
			t.Errorf("generate --seed %s: exit %d, stderr %q; want exit 2 and one line naming --seed", bad, code, errs)
		}
	}
}

// TestRunRuleFormats: --grammar, --regex and --choice constrain a local run's output
// (a prefix of a sentence, whole when the run ended before -n); together, with
// --response-format or --json-schema, or invalid, they are one-line usage errors.
func TestRunRuleFormats(t *testing.T) {
	gfile := filepath.Join(t.TempDir(), "g.gbnf")
	const g = "root ::= \"Once \" word (\" \" word){0,5} \".\"\nword ::= [a-z]+\n"
	if err := os.WriteFile(gfile, []byte(g), 0o644); err != nil {
		t.Fatal(err)
	}
	gf, _ := grammar.GBNFFormat(g)
	rf, _ := grammar.RegexFormat(`[A-Z][a-z]+( [a-z]+){0,3}\.`)
	cf, _ := grammar.ChoiceFormat([]string{"Once", "Twice", "Never"})
	for _, c := range []struct {
		flags []string
		f     grammar.Format
	}{
		{[]string{"--grammar", "@" + gfile}, gf},
		{[]string{"--grammar", g}, gf},
		{[]string{"--regex", `[A-Z][a-z]+( [a-z]+){0,3}\.`}, rf},
		{[]string{"--choice", "Once,Twice,Never"}, cf},
		{[]string{"--choice", "Once", "--choice", "Twice", "--choice", "Never"}, cf},
	} {
		args := append([]string{"run", "-m", "stories260K", "-p", "Once upon a time", "-n", "24", "--temp", "0", "--json"}, c.flags...)
		out, stderr, code := run(t, args...)
		var res struct {
			Text      string `json:"text"`
			OutputIDs []int  `json:"output_ids"`
		}
		if err := json.Unmarshal([]byte(out), &res); code != 0 || err != nil {
			t.Fatalf("%v: exit %d, %v: %s", c.flags, code, err, stderr)
		}
		t.Logf("%v: %q", c.flags, res.Text)
		prefix, whole := c.f.Check([]byte(res.Text))
		if !prefix || len(res.OutputIDs) < 24 && !whole {
			t.Errorf("%v: %q (%d tokens) is not a sentence of the format (prefix %v, whole %v)", c.flags, res.Text, len(res.OutputIDs), prefix, whole)
		}
	}
	for _, args := range [][]string{
		{"--grammar", `root ::= "a"`, "--regex", "a"},
		{"--choice", "a", "--response-format", "json_object"},
		{"--regex", "a", "--json-schema", "{}"},
		{"--grammar", "root ::= x"},
		{"--grammar", "@/no/such/file"},
		{"--regex", `(a)\1`},
		{"--choice", "a,,b"},
	} {
		_, stderr, code := run(t, append([]string{"run", "-m", "stories260K", "-p", "x", "-n", "4"}, args...)...)
		if code != 2 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and one line", args, code, stderr)
		}
	}
}
