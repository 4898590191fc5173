package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/specd-dev/specd/internal/testmodels"
)

// archRef is one row of ../shared/reference/llamacpp_teacher_forced_arch.jsonl.
type archRef struct {
	File      string    `json:"file"`
	ID        string    `json:"id"`
	Prompt    string    `json:"prompt"`
	PromptIDs []int32   `json:"prompt_ids"`
	ForcedIDs []int32   `json:"forced_ids"`
	Top1      []int32   `json:"llamacpp_top1"`
	Margin    []float64 `json:"llamacpp_margin"`
}

func archRefs(t *testing.T) []archRef {
	t.Helper()
	f, err := os.Open(filepath.Join(testmodels.ReferenceDir(t), "llamacpp_teacher_forced_arch.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []archRef
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<22)
	for sc.Scan() {
		var r archRef
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		rows = append(rows, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

// TestRunAndScoreArchFiles: `specd score` and `specd run` take the qwen2 and Llama-3
// shaped files; score's argmax after each forced token is llama.cpp's wherever llama.cpp's
// margin is clear, and run's first greedy token is llama.cpp's argmax after the prompt.
func TestRunAndScoreArchFiles(t *testing.T) {
	rows := archRefs(t)
	for _, name := range []string{"arch-qwen2-f16", "arch-llama3-f16"} {
		t.Run(name, func(t *testing.T) {
			var r *archRef
			for i := range rows {
				if rows[i].File == name+".gguf" && rows[i].Margin[0] >= 0.1 {
					r = &rows[i]
					break
				}
			}
			if r == nil {
				t.Fatalf("no reference row for %s with a clear first margin", name)
			}
			ids := append(append([]int32(nil), r.PromptIDs...), r.ForcedIDs[:len(r.ForcedIDs)-1]...)
			list := strings.Trim(strings.Join(strings.Fields(fmt.Sprint(ids)), ","), "[]")
			stdout, stderr, code := run(t, "score", "-m", name, "--ids", list, "--json")
			if code != 0 {
				t.Fatalf("score: exit %d: %s", code, stderr)
			}
			var sc scoreResult
			if err := json.Unmarshal([]byte(stdout), &sc); err != nil {
				t.Fatal(err)
			}
			if len(sc.Argmax) != len(ids) {
				t.Fatalf("score gave %d argmaxes for %d ids", len(sc.Argmax), len(ids))
			}
			for i, want := range r.Top1 {
				if got := sc.Argmax[len(r.PromptIDs)-1+i]; got != want && r.Margin[i] >= 0.1 {
					t.Errorf("score: argmax after forced position %d = %d, llama.cpp %d (margin %.2f)", i, got, want, r.Margin[i])
				}
			}
			stdout, stderr, code = run(t, "run", "-m", name, "-p", r.Prompt, "-n", "4", "--temp", "0", "--json")
			if code != 0 {
				t.Fatalf("run: exit %d: %s", code, stderr)
			}
			var res runResult
			if err := json.Unmarshal([]byte(stdout), &res); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(res.PromptIDs) != fmt.Sprint(r.PromptIDs) {
				t.Fatalf("run: prompt ids %v, want %v", res.PromptIDs, r.PromptIDs)
			}
			if len(res.OutputIDs) == 0 || res.OutputIDs[0] != r.Top1[0] {
				t.Errorf("run: greedy tokens %v, want the first to be llama.cpp's argmax %d", res.OutputIDs, r.Top1[0])
			}
		})
	}
}
