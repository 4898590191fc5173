package sample

import "math"

// LogSumExp returns ln Σ exp(logits[i]), summed in float64 in index order after
// subtracting the largest logit, so that it neither overflows nor depends on anything
// but the logits: the log-softmax of token i — its log-probability under the model's
// own distribution, before temperature and filters — is logits[i] minus it. The same
// logits give the same result bit for bit. Empty logits give -Inf.
func LogSumExp(logits []float32) float64 {
	if len(logits) == 0 {
		return math.Inf(-1)
	}
	top := float64(logits[Argmax(logits)])
	if math.IsInf(top, 0) {
		return top
	}
	sum := 0.0
	for _, v := range logits {
		sum += math.Exp(float64(v) - top)
	}
	return top + math.Log(sum)
}

// TopIDs appends to dst the ids of the k largest logits, by decreasing logit and equal
// logits by increasing id (the order Distribution sorts by), and returns it. It keeps
// the k best in order while it scans, which for the few tokens an API returns (k ≤ 20)
// costs one comparison for most of the vocabulary.
func TopIDs(dst []int32, logits []float32, k int) []int32 {
	k = min(k, len(logits))
	if k <= 0 {
		return dst
	}
	start := len(dst)
	better := byLogit(logits)
	for i := range logits {
		id := int32(i)
		switch {
		case len(dst)-start < k:
			dst = append(dst, id)
		case better(id, dst[len(dst)-1]) < 0:
			dst[len(dst)-1] = id
		default:
			continue
		}
		for j := len(dst) - 1; j > start && better(dst[j], dst[j-1]) < 0; j-- {
			dst[j], dst[j-1] = dst[j-1], dst[j]
		}
	}
	return dst
}
