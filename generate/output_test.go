package generate_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/specd-dev/specd/generate"
	"github.com/specd-dev/specd/internal/testmodels"
	"github.com/specd-dev/specd/model"
	"github.com/specd-dev/specd/toolcall"
)

// TestOutputFinish: generation ends with Length when max tokens come first and with
// Context when the context window fills — also when max tokens is reached by the same
// token (a request for "the rest of the context", or more than fits).
func TestOutputFinish(t *testing.T) {
	m, err := model.Load(testmodels.ForTest(t, "specd-target-q8_0"), model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	prompt := m.Tok.Encode("Once upon a time", true)
	ids := m.Tok.Encode(" the", false)
	tok := ids[len(ids)-1]
	room := m.Context - len(prompt)
	for _, tc := range []struct {
		name      string
		maxTokens int
		want      generate.Finish
		n         int
	}{
		{"max tokens first", 3, generate.Length, 3},
		{"both at once", room, generate.Context, room},
		{"more than fits", room + 100, generate.Context, room},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := generate.NewOutput(m.Tok, prompt, generate.Limits{MaxTokens: tc.maxTokens, Context: m.Context, End: m.Tok.EOG(), BOS: m.Tok.BOS()})
			for !o.Done() {
				o.Push(tok)
			}
			if o.Reason != tc.want || len(o.IDs) != tc.n {
				t.Errorf("finish %v after %d tokens, want %v after %d", o.Reason, len(o.IDs), tc.want, tc.n)
			}
		})
	}
}

// TestOutputEnds: any id of Limits.End ends the text as EOS does, without adding the id
// to the output — a chat model's end-of-turn marker as well as EOS.
func TestOutputEnds(t *testing.T) {
	m, err := model.Load(testmodels.ForTest(t, "specd-target-q8_0"), model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	prompt := m.Tok.Encode("Once upon a time", true)
	the := m.Tok.Encode(" the", false)
	marker := the[len(the)-1] // stands in for a vocabulary's <|im_end|>
	for _, end := range []int32{m.Tok.EOS(), marker} {
		o := generate.NewOutput(m.Tok, prompt, generate.Limits{MaxTokens: 8, Context: m.Context, End: []int32{m.Tok.EOS(), marker}, BOS: m.Tok.BOS()})
		o.Push(300)
		o.Push(end)
		if !o.Done() || o.Reason != generate.EOS || len(o.IDs) != 1 {
			t.Errorf("after 300, %d: done %v, reason %v, ids %v; want EOS after [300]", end, o.Done(), o.Reason, o.IDs)
		}
	}
}

// TestLimitsEndAt: the ids that end a text are the vocabulary's end-of-generation ids
// (BOS too where the checkpoint ends with it) and the request's stop ids; with
// ignoreEOS only the stop ids.
func TestLimitsEndAt(t *testing.T) {
	eog := []int32{2, 7}
	for _, c := range []struct {
		name      string
		stopAtBOS bool
		stop      []int32
		ignore    bool
		ends      []int32 // ids that end the text
		goOn      []int32 // ids that do not
	}{
		{"vocabulary", false, nil, false, []int32{2, 7}, []int32{1, 9}},
		{"vocabulary and BOS", true, nil, false, []int32{1, 2, 7}, []int32{9}},
		{"stop ids too", false, []int32{9}, false, []int32{2, 7, 9}, []int32{1}},
		{"ignore EOS", true, []int32{9}, true, []int32{9}, []int32{1, 2, 7}},
		{"ignore EOS, no stop ids", false, nil, true, nil, []int32{1, 2, 7, 9}},
	} {
		var l generate.Limits
		l.EndAt(eog, 1, c.stopAtBOS, c.stop, c.ignore)
		ends := func(id int32) bool { return slices.Contains(l.Ends(), id) }
		for _, id := range c.ends {
			if !ends(id) {
				t.Errorf("%s: %d does not end the text (limits %+v)", c.name, id, l)
			}
		}
		for _, id := range c.goOn {
			if ends(id) {
				t.Errorf("%s: %d ends the text (limits %+v)", c.name, id, l)
			}
		}
	}
}

// TestOutputMinTokensStop: with MinTokens, a stop string counts only once the output
// has more than MinTokens tokens, and only where it ends after their text — as vLLM's
// min_tokens (tests/detokenizer/test_min_tokens.py: min_tokens 5 and stop "e" keep
// " is Lee, and I'm a stud") — pushed token by token and resumed after a failover
// inside and past the minimum alike; without MinTokens the first "e" cuts.
func TestOutputMinTokensStop(t *testing.T) {
	m, err := model.Load(testmodels.ForTest(t, "specd-target-q8_0"), model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	prompt := m.Tok.Encode("Hello, my name", true)
	ids := m.Tok.Encode("is Lee, and I'm a student in the college of engineering", false) // " is Lee…" after the prompt
	// The text after each number of tokens, as an output without stop strings has it.
	texts := []string{""}
	plain := generate.NewOutput(m.Tok, prompt, generate.Limits{MaxTokens: 64, Context: m.Context, End: m.Tok.EOG()})
	for _, id := range ids {
		plain.Push(id)
		texts = append(texts, plain.Text())
	}
	full := texts[len(ids)]
	for _, minTokens := range []int{0, 2, 5, 8} {
		protected := len(texts[minTokens])
		// The first "e" that ends after the protected text.
		want := full[:protected+strings.Index(full[protected:], "e")]
		lim := generate.Limits{MaxTokens: 64, Context: m.Context, End: m.Tok.EOG(), Stop: []string{"e"}, MinTokens: minTokens}
		for _, resume := range []int{0, 1, minTokens, minTokens + 2} {
			o := generate.NewOutput(m.Tok, prompt, lim)
			o.Resume(ids[:resume], 0)
			for _, id := range ids[resume:] {
				if o.Done() {
					break
				}
				o.Push(id)
			}
			if o.Reason != generate.StopString || o.Text() != want {
				t.Errorf("min tokens %d, resumed after %d: %q (%v), want %q cut at a stop string", minTokens, resume, o.Text(), o.Reason, want)
			}
		}
	}
}

// TestOutputToolCall: with Limits.ToolCall the text ends after the token that closes
// its first call's JSON — not at a JSON object that is no call, nor inside one — with
// the text up to that token; and a resume whose last token closed it is done again.
func TestOutputToolCall(t *testing.T) {
	m, err := model.Load(testmodels.ForTest(t, "specd-target-q8_0"), model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	prompt := m.Tok.Encode("Once upon a time", true)
	for _, c := range []struct {
		name   string
		syntax toolcall.Syntax
		text   string // generated
		want   string // the text when it ends ("": never ends before the text's last token)
	}{
		{"hermes", toolcall.Hermes, "Sure.\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"s\": \"}\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"g\"}",
			"Sure.\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"s\": \"}\"}}"},
		{"hermes answer", toolcall.Hermes, "It is {\"name\": \"f\"} and more.", ""},
		{"llama3_json", toolcall.Llama3JSON, "{\"name\": \"f\", \"parameters\": {}}; {\"name\": \"g\", \"parameters\": {}}",
			"{\"name\": \"f\", \"parameters\": {}}"},
		{"llama3_json answer", toolcall.Llama3JSON, "Not a call {\"name\": \"f\"}", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			ids := m.Tok.Encode(c.text, false)
			lim := generate.Limits{MaxTokens: 1000, Context: m.Context, End: m.Tok.EOG(), BOS: m.Tok.BOS(), ToolCall: c.syntax}
			o := generate.NewOutput(m.Tok, prompt, lim)
			var streamed strings.Builder
			n := 0
			for _, id := range ids {
				if o.Done() {
					break
				}
				streamed.WriteString(o.Push(id))
				n++
			}
			if c.want == "" {
				if o.Done() || n != len(ids) {
					t.Fatalf("%q: done (%v) after %d of %d tokens; want it to go on", c.text, o.Reason, n, len(ids))
				}
				return
			}
			// The whole text as an output without ToolCall shows it (the tokenizer may
			// put a space before it).
			all := generate.NewOutput(m.Tok, prompt, generate.Limits{MaxTokens: 1000, Context: m.Context, End: m.Tok.EOG(), BOS: m.Tok.BOS()})
			all.Resume(ids, 0)
			got := o.Text()
			if o.Reason != generate.ToolCall || !strings.Contains(got, c.want) || !strings.HasPrefix(all.Text(), got) || len(got) >= len(all.Text()) {
				t.Fatalf("%q: finish %v, text %q; want %v, text up to %q (and the rest of its token)", c.text, o.Reason, got, generate.ToolCall, c.want)
			}
			if streamed.String() != got {
				t.Errorf("streamed %q, want the text %q", streamed.String(), got)
			}
			r := generate.NewOutput(m.Tok, prompt, lim)
			r.Resume(o.IDs, len(o.Text()))
			if r.Reason != generate.ToolCall || r.Text() != o.Text() {
				t.Errorf("resumed: finish %v, text %q; want %v, %q", r.Reason, r.Text(), generate.ToolCall, o.Text())
			}
			r = generate.NewOutput(m.Tok, prompt, lim)
			if r.Resume(o.IDs[:len(o.IDs)-1], 0); r.Done() {
				t.Errorf("resumed before the call's last token: done (%v)", r.Reason)
			}
		})
	}
}
