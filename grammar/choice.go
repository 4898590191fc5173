package grammar

import (
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"
)

// MaxChoices bounds the strings of a ChoiceFormat.
const MaxChoices = 256

// ChoiceFormat asks for text that is exactly one of choices (vLLM's guided_choice): at
// least one, at most MaxChoices, each non-empty valid UTF-8, together within
// MaxSourceBytes and maxElems characters. The choices are matched as a trie (choices
// that begin alike share their beginning), so the alternatives open at once are the
// characters that may come next. Errors wrap ErrGrammar.
func ChoiceFormat(choices []string) (Format, error) {
	switch {
	case len(choices) == 0:
		return Format{}, fmt.Errorf("%w: no choices: give at least one", ErrGrammar)
	case len(choices) > MaxChoices:
		return Format{}, fmt.Errorf("%w: %d choices: at most %d", ErrGrammar, len(choices), MaxChoices)
	}
	total := 0
	runes := make([][]rune, 0, len(choices))
	for i, c := range choices {
		switch {
		case c == "":
			return Format{}, fmt.Errorf("%w: choice %d is empty", ErrGrammar, i)
		case !utf8.ValidString(c):
			return Format{}, fmt.Errorf("%w: choice %d is not valid UTF-8", ErrGrammar, i)
		}
		if total += len(c); total > MaxSourceBytes {
			return Format{}, fmt.Errorf("%w: the choices are more than %d bytes", ErrGrammar, MaxSourceBytes)
		}
		runes = append(runes, []rune(c))
	}
	slices.SortFunc(runes, slices.Compare)
	runes = slices.CompactFunc(runes, slices.Equal)
	b := newBuilder()
	root, err := b.choices(runes)
	if err != nil {
		return Format{}, noPosition(err)
	}
	rs, err := b.link(root)
	if err != nil {
		return Format{}, noPosition(err)
	}
	rs.choices = slices.Clone(choices)
	return Format{kind: Choice, rules: rs}, nil
}

// choices makes a rule of strs (sorted, distinct) as a trie: an alternative for each
// first character, which reads what the strings beginning with it share and then a
// rule of their rests; and the empty alternative if "" is one of strs.
func (b *builder) choices(strs [][]rune) (int32, error) {
	r, err := b.fresh(srcPos{}, "choice")
	if err != nil {
		return 0, err
	}
	var alts [][]sym
	for i := 0; i < len(strs); {
		if len(strs[i]) == 0 {
			alts = append(alts, nil)
			i++
			continue
		}
		j := i + 1
		for j < len(strs) && len(strs[j]) > 0 && strs[j][0] == strs[i][0] {
			j++
		}
		group := strs[i:j]
		// The beginning the group shares.
		n := len(group[0])
		for _, s := range group[1:] {
			n = min(n, len(s))
			for k := range n {
				if s[k] != group[0][k] {
					n = k
					break
				}
			}
		}
		var seq []sym
		for _, c := range group[0][:n] {
			seq = append(seq, charSym([]span{{c, c}}))
		}
		if len(group) > 1 {
			rests := make([][]rune, len(group))
			for k, s := range group {
				rests[k] = s[n:]
			}
			sub, err := b.choices(rests)
			if err != nil {
				return 0, err
			}
			seq = append(seq, refSym(sub))
		}
		alts = append(alts, seq)
		i = j
	}
	return r, b.define(r, alts, srcPos{})
}

// noPosition drops the line and column of err, which a list of choices has none of.
func noPosition(err error) error {
	if e, ok := errors.AsType[*SyntaxError](err); ok {
		return fmt.Errorf("%w: %s", ErrGrammar, e.Msg)
	}
	return err
}
