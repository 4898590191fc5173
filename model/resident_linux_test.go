package model_test

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/specd-dev/specd/ggml"
	"github.com/specd-dev/specd/internal/testmodels"
	"github.com/specd-dev/specd/model"
)

// fileResidentKB sums the Rss of this process's mappings of path (/proc/self/smaps).
func fileResidentKB(t *testing.T, path string) (kb, mappings int) {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) == 0:
		case !strings.HasSuffix(fields[0], ":"): // a mapping's header: range, perms, …, path
			in = fields[len(fields)-1] == path
			if in {
				mappings++
			}
		case in && fields[0] == "Rss:":
			var n int
			if _, err := fmt.Sscan(fields[1], &n); err != nil {
				t.Fatal(err)
			}
			kb += n
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return kb, mappings
}

// TestPackedWeightsLeaveTheFileMapping checks that a loaded model holds its weights
// once: the file's pages of every matrix the kernels read in a packed copy leave the
// resident set, and only the embedding's rows, the norms and the metadata may stay.
func TestPackedWeightsLeaveTheFileMapping(t *testing.T) {
	// /proc names a mapping by the file's resolved path.
	path, err := filepath.EvalSymlinks(testmodels.ForTest(t, "specd-target-q8_0.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	f32 := ggml.F32
	for _, quant := range []*ggml.Type{nil, &f32} {
		m, err := model.Load(path, model.LoadOptions{Quant: quant})
		if err != nil {
			t.Fatal(err)
		}
		st2 := newState(t, m, 1, 1)
		if _, err := st2.Forward([]int32{1, 100, 200}, true); err != nil {
			t.Fatal(err)
		}
		kb, n := fileResidentKB(t, path)
		if n != 1 {
			t.Fatalf("%d mappings of %s in /proc/self/smaps, want this model's one", n, path)
		}
		// The embedding (4096 rows of 512 Q8_0 weights) is 2.2 MB of the file's 27 MB;
		// converted to F32 it leaves the file too.
		if limit := st.Size() / 1024 / 8; int64(kb) > limit {
			t.Errorf("quant %v: %d kB of %s resident, want ≤ %d kB: weights held twice", quant, kb, path, limit)
		}
		m.Close()
	}
}
