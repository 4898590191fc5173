// Package spec holds the vocabulary that a draft and a verifier share — proposals,
// verdicts and verification modes — and the rules both sides apply to them. It is the
// domain form of the speculation protocol, free of gRPC; draft and verifier import it
// and never each other.
//
// The protocol, with positions counted from 0 over the whole sequence (prompt
// included):
//
//   - The verifier owns the committed sequence. The draft keeps its own copy plus the
//     tokens it has proposed beyond it.
//   - A Proposal carries tokens for positions Start, Start+1, … and, in rejection mode,
//     the draft's exact sampling distribution for each.
//   - Pipelining: the draft keeps proposing later rounds assuming everything it sent is
//     accepted and that the verifier's bonus token equals its own next token.
//   - A Verdict carries the committed tokens from Position on — never later than the
//     previous verdict's Position, so the draft, whatever it rolled back on its own, can
//     always line up with it: tokens it already had, any the verifier decoded without
//     it, the accepted ones, and last the correction or bonus. The draft keeps its
//     proposals where they agree and rolls back where not.
//   - The verifier uses a proposal only if it was made after the last verdict that
//     contradicted the draft (Base ≥ that verdict's Seq) — or it is a branch of the
//     round that verdict rejected, starting at the rejected position — it starts at or
//     before the committed end, and its tokens before the committed end equal the
//     committed ones; anything else is stale and dropped.
//   - Branches (optional, Options.Branches): while a round is being verified, an idle
//     draft may draft from its guess of the correction at likely rejection points.
//     Where the guess is right the verifier finds the continuation already queued and
//     the round trip disappears.
package spec

import (
	"fmt"
	"time"

	"github.com/specd-dev/specd/sample"
)

// Mode is how sampled (temperature > 0) proposals are verified. Greedy requests are
// verified by exact match whatever the mode.
type Mode int

// Verification modes.
const (
	// Coupled: draft and verifier draw with the same Gumbel noise keyed by (seed,
	// position); the verifier's token is exactly plain decoding's, and a draft token is
	// accepted when it equals it. A seeded request gives the same tokens whatever γ,
	// pipelining, replica or failover.
	Coupled Mode = iota + 1
	// Rejection: accept x with probability min(1, p(x)/q(x)), else sample from
	// normalize(max(0, p−q)) (Leviathan et al. 2023, Algorithm 1; Chen et al. 2023).
	Rejection
)

func (m Mode) String() string {
	switch m {
	case Coupled:
		return "coupled"
	case Rejection:
		return "rejection"
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// ParseMode parses "coupled" or "rejection".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "coupled":
		return Coupled, nil
	case "rejection":
		return Rejection, nil
	}
	return 0, fmt.Errorf("unknown verification mode %q (want coupled or rejection)", s)
}

// Proposal is one round of draft tokens.
type Proposal struct {
	Round  uint64        // increases by one per proposal of a session, from 1
	Base   uint64        // Seq of the last verdict the draft had applied when it drafted this
	Start  int           // absolute position of Tokens[0]
	Tokens []int32       // the drafted tokens
	Dists  []sample.Dist // the draft's distribution for each token (rejection mode), else nil
	// BranchOf, when not 0, marks a branch: the draft's guess of how the verifier will
	// correct round BranchOf — Tokens[0] is its guess of the correction at Start, the
	// rest continue from it. The verifier may use it right after rejecting round
	// BranchOf at exactly Start with exactly Tokens[0], with no round trip.
	BranchOf uint64
	Drafting time.Duration // the draft's compute time for this proposal (0: unknown)
}

// Verdict answers a proposal (or tells the draft of tokens decoded without one).
type Verdict struct {
	Round     uint64  // the proposal answered
	Seq       uint64  // numbers the verdicts of a session 1, 2, …
	Accepted  int     // how many of that proposal's tokens were committed
	Position  int     // absolute position of Tokens[0]
	Tokens    []int32 // committed tokens from Position on; the last is the verifier's own
	NextGamma int     // how many tokens to draft per round from now on
	// FirstGamma, when > 0, caps the draft's next round if this verdict rolls it back:
	// the verifier waits for every token of that round, not for the pipelined ones.
	FirstGamma int
	// Rollback: the verifier drops every proposal based on an earlier verdict (other
	// than a branch of the rejected round at the rejected position), so the draft ends
	// all its unanswered rounds even where its sequence agrees with Tokens, and drafts
	// on from the verdict's end, not from tokens it drafted past it. Without it
	// a draft whose pipelined rounds guessed the verifier's own tokens right would wait
	// for verdicts on rounds the verifier had dropped.
	Rollback bool
}

// Session options that both sides must agree on.
type Options struct {
	Sampling     sample.Params
	Mode         Mode
	Gamma        int // initial tokens per round
	MaxPosition  int // never propose at or past this position
	ProposalTopK int // rejection mode: support size of the draft distributions sent
	Branches     int // draft: alternative continuations per round being verified (0: none)
	// PromptLen is how many tokens of the context are the prompt (the rest were
	// generated), for the sampling penalties; 0: all of them.
	PromptLen int
	// Ends are the ids that end the output (generate.Limits.Ends): a draft holds them
	// back while the output is shorter than Sampling.MinTokens, and proposes one where a
	// grammar's document is whole, as the verifier would draw them.
	Ends []int32
}
