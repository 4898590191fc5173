package grammar

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestChoiceCheck(t *testing.T) {
	choices := []string{"positive", "negative", "neutral", "ne", "n", "世界", "世", "😀 ok"}
	f, err := ChoiceFormat(choices)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		text          string
		prefix, whole bool
	}{
		{"positive", true, true}, {"pos", true, false}, {"n", true, true}, {"ne", true, true},
		{"neu", true, false}, {"neutral", true, true}, {"neutrals", false, false}, {"x", false, false},
		{"世", true, true}, {"世界", true, true}, {"\xe4\xb8", true, false}, {"😀 ok", true, true}, {"", true, false},
	}
	for _, tt := range tests {
		prefix, whole := f.Check([]byte(tt.text))
		if prefix != tt.prefix || whole != tt.whole {
			t.Errorf("Check(%q) = %v, %v, want %v, %v", tt.text, prefix, whole, tt.prefix, tt.whole)
		}
	}
	if got := f.Choices(); !slices.Equal(got, choices) || f.Kind() != Choice {
		t.Errorf("Choices() = %q (kind %v), want %q", got, f.Kind(), choices)
	}
}

func TestChoiceErrors(t *testing.T) {
	many := make([]string, MaxChoices+1)
	for i := range many {
		many[i] = fmt.Sprint(i)
	}
	tests := []struct {
		choices []string
		want    string
	}{
		{nil, "no choices"},
		{[]string{"a", ""}, "choice 1 is empty"},
		{[]string{"\xff"}, "not valid UTF-8"},
		{many, "257 choices: at most 256"},
		{[]string{strings.Repeat("a", MaxSourceBytes+1)}, "more than"},
		{[]string{strings.Repeat("a", maxElems)}, "more than 65536 elements"},
	}
	for _, tt := range tests {
		_, err := ChoiceFormat(tt.choices)
		if err == nil || !errors.Is(err, ErrGrammar) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ChoiceFormat(%.40q) = %v, want an ErrGrammar with %q", tt.choices, err, tt.want)
		}
	}
}

// TestManyChoices: the most choices, each beginning differently, are all open at the
// start.
func TestManyChoices(t *testing.T) {
	var choices []string
	for i := range MaxChoices {
		choices = append(choices, string(rune(0x4e00+i))+"x")
	}
	f, err := ChoiceFormat(choices)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range choices {
		if _, whole := f.Check([]byte(c)); !whole {
			t.Fatalf("Check(%q) not whole", c)
		}
	}
}

// FuzzChoice: a text is taken whole exactly when it is one of the choices.
func FuzzChoice(f *testing.F) {
	f.Add("yes,no,maybe", "no")
	f.Add("a,ab,abc,b", "ab")
	f.Add("é,ée,e", "ée")
	f.Fuzz(func(t *testing.T, list, text string) {
		choices := strings.Split(list, ",")
		fm, err := ChoiceFormat(choices)
		if err != nil {
			if !errors.Is(err, ErrGrammar) {
				t.Fatalf("%q: %v does not wrap ErrGrammar", choices, err)
			}
			return
		}
		prefix, whole := fm.Check([]byte(text))
		if want := slices.Contains(choices, text); whole != want {
			t.Fatalf("%q: Check(%q) whole %v, want %v", choices, text, whole, want)
		}
		begins := slices.ContainsFunc(choices, func(c string) bool { return strings.HasPrefix(c, text) })
		if prefix != begins {
			t.Fatalf("%q: Check(%q) prefix %v, want %v", choices, text, prefix, begins)
		}
	})
}
