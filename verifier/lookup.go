package verifier

import "slices"

// Prompt lookup: the verifier's own steps check a guess taken from the sequence itself.
//
// While a proposal travels from the draft (after every rollback), the verifier decodes
// its next token on its own. That pass costs about what a pass over a few tokens costs
// (a step is bound by reading the weights), so it also checks the tokens that followed
// the latest earlier occurrence of the sequence's last n tokens — the n-gram guess of
// "prompt lookup decoding" (Saxena 2023; vLLM's ngram proposer, llama.cpp's lookup).
// Generated text repeats its prompt and itself: names, quoted lines, refrains, code.
// The guess is judged by the same rules as a draft's tokens, so the output is unchanged.

// Lookup n-gram lengths: the longest suffix tried first, down to the shortest.
const (
	lookupMaxN = 3
	lookupMinN = 1
)

// lookup returns up to k tokens guessed to follow seq: those that followed the latest
// earlier occurrence of its last n tokens, for the largest n in [lookupMinN, lookupMaxN]
// that occurs. A continuation that runs into the end of seq goes on copying the guess
// itself, so a loop of any period is followed for all k tokens. It returns nil when no
// suffix recurs.
func lookup(seq []int32, k int) []int32 {
	L := len(seq)
	if k <= 0 {
		return nil
	}
	for n := min(lookupMaxN, L-1); n >= lookupMinN; n-- {
		suffix := seq[L-n:]
		for i := L - n - 1; i >= 0; i-- {
			if !slices.Equal(seq[i:i+n], suffix) {
				continue
			}
			// seq[i+n] followed the occurrence; i+n < L, so each guessed token
			// copies one already known (from seq, or guessed before it).
			guess := make([]int32, 0, k)
			for j := range k {
				src := i + n + j
				if src < L {
					guess = append(guess, seq[src])
				} else {
					guess = append(guess, guess[src-L])
				}
			}
			return guess
		}
	}
	return nil
}
