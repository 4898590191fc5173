package sample

import (
	"math"

	"github.com/specd-dev/specd/kernels"
)

// LogSumExp returns ln Σ exp(logits[i]): the log-softmax of token i — its
// log-probability under the model's own distribution, before temperature and filters —
// is logits[i] minus it. It runs the vector softmax (kernels.Softmax) over a copy of the
// logits in scratch, which it grows as needed and returns: the largest logit m has
// probability exp(0)/Σ, so the result is m − ln p(m), to float32 precision. Like the
// softmax it depends on the logits alone, bit for bit, on every path. Empty logits
// give -Inf.
func LogSumExp(logits, scratch []float32) (float64, []float32) {
	if len(logits) == 0 {
		return math.Inf(-1), scratch
	}
	top := Argmax(logits)
	m := float64(logits[top])
	if math.IsInf(m, 0) || math.IsNaN(m) {
		return m, scratch
	}
	scratch = append(scratch[:0], logits...)
	kernels.Softmax(scratch, 1)
	return m - math.Log(float64(scratch[top])), scratch
}

// TopIDs appends to dst the ids of the k largest logits, by decreasing logit and equal
// logits by increasing id (the order Distribution sorts by), and returns it. It keeps
// the k best in order while it scans the ids in increasing order, so a later id enters
// only with a strictly larger logit than the k-th best: one comparison for most of the
// vocabulary.
func TopIDs(dst []int32, logits []float32, k int) []int32 {
	k = min(k, len(logits))
	if k <= 0 {
		return dst
	}
	start := len(dst)
	better := byLogit(logits)
	for i, v := range logits {
		switch {
		case len(dst)-start < k:
			dst = append(dst, int32(i))
		case v > logits[dst[len(dst)-1]]:
			dst[len(dst)-1] = int32(i)
		default:
			continue
		}
		for j := len(dst) - 1; j > start && better(dst[j], dst[j-1]) < 0; j-- {
			dst[j], dst[j-1] = dst[j-1], dst[j]
		}
	}
	return dst
}
