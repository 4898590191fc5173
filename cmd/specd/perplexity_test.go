package main

import (
	"bufio"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/specd-dev/specd/internal/testmodels"
)

// llamaPerplexity is one line of testdata/perplexity/llamacpp_b4748.jsonl: what
// llama-perplexity (b4748, F32 KV cache) printed for testdata/perplexity/prompts.txt.
type llamaPerplexity struct {
	File       string    `json:"file"`
	CtxSize    int       `json:"ctx_size"`
	Chunks     int       `json:"chunks"`
	Running    []float64 `json:"running"`
	Perplexity float64   `json:"perplexity"`
	StdErr     float64   `json:"stderr"`
	Command    string    `json:"command"`
}

func readLlamaPerplexity(t *testing.T) []llamaPerplexity {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "perplexity", "llamacpp_b4748.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var refs []llamaPerplexity
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r llamaPerplexity
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		refs = append(refs, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return refs
}

// TestPerplexityMatchesLlamaCpp: score -f gives the perplexity llama-perplexity gives on
// the same file, text and chunk size, chunk by chunk (its running [i] values): the
// same tokens (BOS first, BOS in place of each chunk's first token), the same chunks
// and the same scored second halves. Float files agree to 4 digits; quantized ones
// differ by float order and by llama.cpp quantizing activations for its dot
// products (Q8_0 / Q8_K), which moves its own figure as much (F16 vs F32 KV: 0.25%).
func TestPerplexityMatchesLlamaCpp(t *testing.T) {
	tol := map[string]float64{
		"stories260K-f32.gguf": 5e-4, "specd-draft-f16.gguf": 5e-4, "arch-qwen2-f16.gguf": 5e-4,
		"specd-draft-q8_0.gguf": 6e-3, "specd-target-q8_0.gguf": 6e-3,
		"specd-draft-q4_0.gguf": 1e-2, "specd-target-q4_k_m.gguf": 1e-2, "arch-qwen2-q4_k_m.gguf": 1e-2,
	}
	short := map[string]bool{"stories260K-f32.gguf": true, "specd-draft-f16.gguf": true, "specd-draft-q4_0.gguf": true}
	text := filepath.Join("testdata", "perplexity", "prompts.txt")
	for _, ref := range readLlamaPerplexity(t) {
		t.Run(ref.File+"/c"+strconv.Itoa(ref.CtxSize), func(t *testing.T) {
			if testing.Short() && !short[ref.File] {
				t.Skip("short: float and Q4_0 files only")
			}
			rel, ok := tol[ref.File]
			if !ok {
				t.Fatalf("no tolerance for %s", ref.File)
			}
			stdout, stderr, code := run(t, "score", "-m", testmodels.ForTest(t, ref.File), "-f", text, "-c", strconv.Itoa(ref.CtxSize), "-t", "2", "--json")
			if code != 0 {
				t.Fatalf("score -f: exit %d: %s", code, stderr)
			}
			var got pplResult
			if err := json.Unmarshal([]byte(stdout), &got); err != nil {
				t.Fatal(err)
			}
			if len(got.Running) != ref.Chunks {
				t.Fatalf("%d chunks, want %d (%s)", len(got.Running), ref.Chunks, ref.Command)
			}
			if want := ref.Chunks * (ref.CtxSize - 1 - ref.CtxSize/2); got.Predictions != want {
				t.Errorf("predictions = %d, want %d", got.Predictions, want)
			}
			for i, w := range ref.Running {
				if d := math.Abs(got.Running[i]/w - 1); d > rel {
					t.Errorf("[%d] = %.4f, want %.4f (llama.cpp; relative difference %.2g > %.2g)", i+1, got.Running[i], w, d, rel)
				}
			}
			if d := math.Abs(got.StdErr/ref.StdErr - 1); d > 10*rel {
				t.Errorf("stderr = %.5f, want %.5f", got.StdErr, ref.StdErr)
			}
		})
	}
}

// TestPerplexityErrors: the text, the chunk size and the flags are checked before any
// work, each naming its flag.
func TestPerplexityErrors(t *testing.T) {
	text := filepath.Join("testdata", "perplexity", "prompts.txt")
	tiny := filepath.Join(t.TempDir(), "tiny.txt")
	if err := os.WriteFile(tiny, []byte("Once upon a time"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"neither", []string{"score", "-m", "stories260K"}, "exactly one of --ids and -f"},
		{"both", []string{"score", "-m", "stories260K", "--ids", "1,2", "-f", text}, "exactly one of --ids and -f"},
		{"missing file", []string{"score", "-m", "stories260K", "-f", filepath.Join(t.TempDir(), "none.txt")}, "-f:"},
		{"short text", []string{"score", "-m", "stories260K", "-f", tiny, "-c", "64"}, "fewer than one chunk of --ctx-size 64"},
		{"tiny chunk", []string{"score", "-m", "stories260K", "-f", text, "-c", "3"}, "--ctx-size 3: want at least 4"},
		{"chunks zero", []string{"score", "-m", "stories260K", "-f", text, "--chunks", "0"}, "--chunks 0"},
		{"chunks with ids", []string{"score", "-m", "stories260K", "--ids", "1,2", "--chunks", "2"}, "--chunks goes with -f"},
	} {
		t.Run(c.name, func(t *testing.T) { checkRefused(t, c.args, 2, c.want) })
	}
}
