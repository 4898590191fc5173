package toolcall

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// streamRun is what a Stream passed on for a reply: the events of each Write, then
// Close's, and Close's error.
type streamRun struct {
	writes [][]Event
	close  []Event
	err    error
}

// runStream writes pieces into a new Stream of syntax s and closes it.
func runStream(s Syntax, pieces []string) streamRun {
	st := s.NewStream()
	var r streamRun
	for _, p := range pieces {
		r.writes = append(r.writes, st.Write(p))
	}
	r.close, r.err = st.Close()
	return r
}

// events are all the events of a run, in order.
func (r streamRun) events() []Event {
	var all []Event
	for _, w := range r.writes {
		all = append(all, w...)
	}
	return append(all, r.close...)
}

// assemble is what a client that joins the events, as OpenAI's stream accumulators
// do, ends with; it fails the test if the events are not well made: a call's Begin
// comes once, first, with the next index and a name; Args only for a begun call;
// no event is empty.
func assemble(t *testing.T, evs []Event) Result {
	t.Helper()
	var r Result
	for i, e := range evs {
		if e.Text == "" {
			t.Fatalf("event %d %+v is empty", i, e)
		}
		switch e.Kind {
		case Content:
			r.Content += e.Text
		case Begin:
			if e.Call != len(r.Calls) {
				t.Fatalf("event %d begins call %d after %d calls", i, e.Call, len(r.Calls))
			}
			r.Calls = append(r.Calls, Call{Name: e.Text})
		case Args:
			if e.Call >= len(r.Calls) {
				t.Fatalf("event %d: arguments of call %d, which has not begun", i, e.Call)
			}
			r.Calls[e.Call].Arguments += e.Text
		default:
			t.Fatalf("event %d: kind %d", i, e.Kind)
		}
	}
	return r
}

// randomCuts cuts text into pieces at places drawn from seed, empty pieces included.
func randomCuts(text string, seed uint64) []string {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var pieces []string
	for text != "" {
		n := min(rng.IntN(9), len(text))
		pieces = append(pieces, text[:n])
		text = text[n:]
	}
	return pieces
}

// checkStream streams the pieces and checks what was passed on against Parse of the
// whole reply: the same, with no error; or, with an error that wraps ErrBroken, only
// where Parse finds no calls although the stream had begun one, and then with calls
// and content that checkBroken accepts. Each text is whole UTF-8 characters when the
// reply is valid UTF-8.
func checkStream(t *testing.T, s Syntax, text string, pieces []string) streamRun {
	t.Helper()
	run := runStream(s, pieces)
	evs := run.events()
	got := assemble(t, evs)
	if utf8.ValidString(text) {
		for _, e := range evs {
			if !utf8.ValidString(e.Text) {
				t.Fatalf("%v %q in pieces %q: event %+v cuts a character", s, text, pieces, e)
			}
		}
	}
	want := s.Parse(text)
	if run.err == nil {
		if !reflect.DeepEqual(norm(got), norm(want)) {
			t.Fatalf("%v %q in pieces %q: passed on %+v, want Parse's %+v", s, text, pieces, got, want)
		}
		return run
	}
	if !errors.Is(run.err, ErrBroken) {
		t.Fatalf("%v %q: Close error %v, want ErrBroken", s, text, run.err)
	}
	if len(want.Calls) > 0 || len(got.Calls) == 0 {
		t.Fatalf("%v %q in pieces %q: broken (%v) with %d calls passed on, while Parse finds %+v", s, text, pieces, run.err, len(got.Calls), want)
	}
	if !checkBroken(s, text, got) {
		t.Fatalf("%v %q in pieces %q: broken (%v), passed on %+v: not the calls before the break and the rest as content", s, text, pieces, run.err, got)
	}
	return run
}

// checkBroken reports whether got is what a broken reply passes on: for some place p
// where the reply stops being calls — a <tool_call> (Hermes) — the calls Parse finds
// in text[:p], perhaps one more (begun at p), and as content what Parse gives for
// text[:p] (Hermes; Llama3JSON has none), white space, and all of text[p:].
func checkBroken(s Syntax, text string, got Result) bool {
	for p := range len(text) {
		if s == Hermes && !strings.HasPrefix(text[p:], hermesOpen) || s == Llama3JSON && p != len(text)-len(got.Content) {
			continue // Llama3JSON's content is all of text[p:]
		}
		pre := s.Parse(text[:p])
		if len(pre.Calls) == 0 {
			pre = Result{Content: pre.Content}
			if s == Llama3JSON {
				pre.Content = ""
			}
		} else if s == Llama3JSON && pre.Content != "" {
			continue
		}
		if n := len(got.Calls) - len(pre.Calls); n < 0 || n > 1 || !reflect.DeepEqual(norm(Result{Calls: got.Calls[:len(pre.Calls)]}).Calls, norm(pre).Calls) {
			continue
		}
		mid, ok := strings.CutPrefix(got.Content, pre.Content)
		if !ok {
			continue
		}
		if mid, ok = strings.CutSuffix(mid, text[p:]); ok && strings.TrimSpace(mid) == "" {
			return true
		}
	}
	return false
}

// norm makes an empty list of calls nil, for comparison.
func norm(r Result) Result {
	if len(r.Calls) == 0 {
		r.Calls = nil
	}
	return r
}

// streamCases are replies in both syntaxes, each a reply that Parse reads as calls,
// or as an answer, and that a stream must pass on exactly.
var streamCases = []struct {
	name   string
	syntax Syntax
	text   string
}{
	{"hermes answer", Hermes, "It is sunny in Paris today.\n"},
	{"hermes answer with a tag's start", Hermes, "Use <tool or </tool_call> or <tool_call"},
	{"hermes one call", Hermes, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}\n</tool_call>"},
	{"hermes text before", Hermes, "Let me look.\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n"},
	{"hermes text between and after", Hermes, "A <tool_call>{\"name\": \"a\"}</tool_call> B \t<tool_call>{\"name\": \"b\"}</tool_call>\n C\n"},
	{"hermes blank runs", Hermes, " \n<tool_call>{\"name\": \"a\"}</tool_call>\n \n<tool_call>{\"name\": \"b\", \"arguments\": {}}</tool_call>\u00a0\n"},
	{"hermes three calls", Hermes, "<tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": [1, -2.5e+3, true, false, null, {\"y\": \"z\"}]}}\n</tool_call>\n<tool_call>\n{\"name\": \"b\", \"arguments\": {\"s\": \"a \\\"q\\\" \\\\ \\u00e9 \\ud83d\\ude00\"}}\n</tool_call>\n<tool_call>{\"name\": \"c\", \"arguments\": {\"t\": \"</tool_call> <tool_call>\"}}</tool_call>"},
	{"hermes name after arguments", Hermes, "<tool_call>{\"arguments\": {\"city\": \"Paris\", \"days\": [1, 2]}, \"name\": \"forecast\"}</tool_call>"},
	{"hermes parameters key", Hermes, "<tool_call>{\"name\": \"a\", \"parameters\": {\"k\": 1}}</tool_call>"},
	{"hermes both keys", Hermes, "<tool_call>{\"name\": \"a\", \"parameters\": [1], \"arguments\": {\"k\": 1}}</tool_call>"},
	{"hermes repeated keys", Hermes, "<tool_call>{\"name\": \"a\", \"arguments\": {\"k\": 1}, \"name\": \"b\", \"arguments\": [2], \"name\": 3}</tool_call>"},
	{"hermes null arguments", Hermes, "<tool_call>{\"name\": \"a\", \"arguments\": null}</tool_call>"},
	{"hermes arguments as JSON text", Hermes, "<tool_call>{\"name\": \"a\", \"arguments\": \" {\\\"k\\\": [1, 2]} \"}</tool_call>"},
	{"hermes escaped keys", Hermes, "<tool_call>{\"n\\u0061me\": \"sp\\u00e9ak\", \"extra\": {\"name\": \"no\"}, \"arguments\": {\"name\": \"yes\"}}</tool_call>"},
	{"hermes unclosed last block", Hermes, "<tool_call>\n{\"name\": \"a\", \"arguments\": {\"k\": 1}}\n \u3000"},
	{"hermes last block cut in its closing tag", Hermes, "<tool_call>\n{\"name\": \"a\", \"arguments\": {\"k\": 1}}\n</tool_c"},
	{"hermes white space in JSON", Hermes, "<tool_call> \r\n\t{ \"name\" : \"a\" ,\n \"arguments\" :\n {\n  \"k\" : [ 1 , 2 ] ,\n  \"s\" : \" x \\t \"\n }\n}\n</tool_call>"},
	{"hermes multi-byte text", Hermes, "Voilà — 東京の天気: <tool_call>{\"name\": \"météo\", \"arguments\": {\"ville\": \"Zürich 🏔\", \"mot\": \"日本語\"}}</tool_call> ✓"},
	{"hermes number arguments end", Hermes, "<tool_call>{\"name\": \"a\", \"arguments\": {\"n\": 10}, \"id\": 7}</tool_call>"},
	{"hermes malformed, nothing begun", Hermes, "Hi <tool_call>{\"arguments\": {}, \"name\": 3}</tool_call> there"},
	{"hermes cut before the name", Hermes, "Hi\n<tool_call>{\"name\": \"a"},
	{"hermes empty block", Hermes, "x <tool_call></tool_call>"},
	{"llama answer", Llama3JSON, "The weather is fine.\n"},
	{"llama answer after white space", Llama3JSON, "  \n Hello {\"name\": \"a\"}"},
	{"llama one call", Llama3JSON, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}"},
	{"llama python tag", Llama3JSON, "\n<|python_tag|> {\"name\": \"a\", \"parameters\": {\"q\": \"x; y\"}}\n"},
	{"llama several calls", Llama3JSON, "{\"name\": \"a\", \"parameters\": {\"s\": \"x;y}\"}}; {\"name\": \"b\", \"arguments\": {\"n\": 2}};\n{\"parameters\": {}, \"name\": \"c\"} ; \n"},
	{"llama only the tag", Llama3JSON, "<|python_tag|>"},
	{"llama tag, then an answer", Llama3JSON, "<|python_tag|>print(1)"},
	{"llama unclosed, nothing begun", Llama3JSON, "{\"parameters\": {\"x\": 1}"},
	{"llama JSON without name", Llama3JSON, "{\"city\": \"Paris\"}"},
	{"llama multi-byte", Llama3JSON, "\u00a0{\"name\": \"天気\", \"parameters\": {\"都市\": \"東京 🗼\"}}"},
	{"empty", Hermes, ""},
	{"empty llama", Llama3JSON, ""},
}

// TestStreamMatchesParse: every reply above, in one piece, a byte at a time, and cut
// in two at every byte (so every tag, key, escape and character is cut somewhere), is
// passed on exactly as Parse reads it whole, without error.
func TestStreamMatchesParse(t *testing.T) {
	for _, c := range streamCases {
		t.Run(c.name, func(t *testing.T) {
			cuts := [][]string{{c.text}, strings.Split(c.text, "")}
			for i := range len(c.text) + 1 {
				cuts = append(cuts, []string{c.text[:i], c.text[i:]})
			}
			bytewise := make([]string, len(c.text))
			for i := 0; i < len(c.text); i++ {
				bytewise[i] = c.text[i : i+1]
			}
			cuts = append(cuts, bytewise)
			for _, pieces := range cuts {
				if run := checkStream(t, c.syntax, c.text, pieces); run.err != nil {
					t.Fatalf("pieces %q: %v", pieces, run.err)
				}
			}
		})
	}
}

// TestStreamIncremental: a call is passed on as the model writes it — its Begin as
// soon as its name has been read, its arguments piece by piece, compacted, each piece
// as soon as it has come — and content as soon as it cannot be part of a call.
func TestStreamIncremental(t *testing.T) {
	for _, c := range []struct {
		name   string
		syntax Syntax
		pieces []string
		want   [][]Event // per Write, then Close's
	}{
		{"hermes", Hermes,
			[]string{"Let me ", "check.\n<tool", "_call>\n{\"name\": \"get_", "weather\", \"arguments\": {\"city\"", ": \"Par", "is\", \"days\": ", "3}}\n</tool_", "call>"},
			[][]Event{
				{{Kind: Content, Text: "Let me"}},
				{{Kind: Content, Text: " check."}},
				nil,
				{{Kind: Begin, Call: 0, Text: "get_weather"}, {Kind: Args, Call: 0, Text: `{"city"`}},
				{{Kind: Args, Call: 0, Text: `:"Par`}},
				{{Kind: Args, Call: 0, Text: `is","days":`}},
				{{Kind: Args, Call: 0, Text: `3}`}},
				nil,
				nil,
			}},
		{"hermes name last", Hermes,
			[]string{"<tool_call>{\"arguments\": {\"a\": ", "1}, ", "\"name\": \"f\"", "}</tool_call><tool_call>{\"name\": \"g\"}", "</tool_call>"},
			[][]Event{nil, nil, {{Kind: Begin, Call: 0, Text: "f"}, {Kind: Args, Call: 0, Text: `{"a":1}`}}, {{Kind: Begin, Call: 1, Text: "g"}, {Kind: Args, Call: 1, Text: "{}"}}, nil, nil}},
		{"llama3_json", Llama3JSON,
			[]string{"<|python_", "tag|>{\"name\": \"a\", \"parameters\": {\"q\": \"é", "\"}}; {\"name\": \"b\", ", "\"parameters\": {}}"},
			[][]Event{nil, {{Kind: Begin, Call: 0, Text: "a"}, {Kind: Args, Call: 0, Text: `{"q":"é`}}, {{Kind: Args, Call: 0, Text: `"}`}, {Kind: Begin, Call: 1, Text: "b"}}, {{Kind: Args, Call: 1, Text: "{}"}}, nil}},
		{"a character cut in two", Hermes,
			[]string{"caf\xc3", "\xa9 <tool_call>{\"name\": \"f\", \"arguments\": {\"s\": \"\xe2\x82", "\xac\"}}"},
			[][]Event{{{Kind: Content, Text: "caf"}}, {{Kind: Content, Text: "é"}, {Kind: Begin, Call: 0, Text: "f"}, {Kind: Args, Call: 0, Text: `{"s":"`}}, {{Kind: Args, Call: 0, Text: `€"}`}}, nil}},
		{"llama answer", Llama3JSON, []string{"  ", "The answer", " is 4.  "}, [][]Event{nil, {{Kind: Content, Text: "  The answer"}}, {{Kind: Content, Text: " is 4.  "}}, nil}},
	} {
		t.Run(c.name, func(t *testing.T) {
			run := runStream(c.syntax, c.pieces)
			got := append(run.writes, run.close)
			for i := range c.want {
				if !reflect.DeepEqual(got[i], c.want[i]) {
					t.Errorf("events after piece %d = %+v, want %+v", i, got[i], c.want[i])
				}
			}
			if run.err != nil {
				t.Errorf("Close: %v", run.err)
			}
		})
	}
}

// TestStreamBroken: a reply that stops being calls after one was begun keeps what was
// sent, passes on the rest as content, and Close says it broke — so a client is never
// left, unwarned, with arguments that do not parse.
func TestStreamBroken(t *testing.T) {
	for _, c := range []struct {
		name    string
		syntax  Syntax
		text    string
		calls   []Call // as passed on when the reply comes a byte at a time
		content string
		why     string // in the error
	}{
		{"hermes arguments malformed", Hermes, "Sure. <tool_call>{\"name\": \"a\", \"arguments\": {\"x\": 1,, \"y\": 2}}</tool_call> ok",
			[]Call{{Name: "a", Arguments: `{"x":1,`}}, "Sure. <tool_call>{\"name\": \"a\", \"arguments\": {\"x\": 1,, \"y\": 2}}</tool_call> ok", "invalid character ','"},
		{"hermes cut off in the arguments", Hermes, "<tool_call>{\"name\": \"a\", \"arguments\": {\"x\": \"abc",
			[]Call{{Name: "a", Arguments: `{"x":"abc`}}, "<tool_call>{\"name\": \"a\", \"arguments\": {\"x\": \"abc", "ended inside"},
		{"hermes arguments not an object", Hermes, "<tool_call>{\"name\": \"a\", \"arguments\": [1]}</tool_call>",
			[]Call{{Name: "a"}}, "<tool_call>{\"name\": \"a\", \"arguments\": [1]}</tool_call>", "not a JSON object"},
		{"hermes text in the block", Hermes, "<tool_call>{\"name\": \"a\"} and more</tool_call>",
			[]Call{{Name: "a", Arguments: "{}"}}, "<tool_call>{\"name\": \"a\"} and more</tool_call>", "text after"},
		{"hermes a later block malformed", Hermes, "A <tool_call>{\"name\": \"a\"}</tool_call>\n B \n<tool_call>[1]</tool_call> C",
			[]Call{{Name: "a", Arguments: "{}"}}, "A \n B \n<tool_call>[1]</tool_call> C", "not a JSON object"},
		{"hermes close tag that is not one", Hermes, "<tool_call>{\"name\": \"a\"}</tool_x",
			[]Call{{Name: "a", Arguments: "{}"}}, "<tool_call>{\"name\": \"a\"}</tool_x", "text after"},
		{"llama text after", Llama3JSON, "{\"name\": \"a\", \"parameters\": {}} Done.",
			[]Call{{Name: "a", Arguments: "{}"}}, "Done.", "only calls"},
		{"llama second call malformed", Llama3JSON, "{\"name\": \"a\", \"parameters\": {}}; {\"name\": \"b\", \"parameters\": {\"x\" 1}}",
			[]Call{{Name: "a", Arguments: "{}"}, {Name: "b", Arguments: `{"x"`}}, "{\"name\": \"b\", \"parameters\": {\"x\" 1}}", "after an object key"},
		{"llama cut off", Llama3JSON, "<|python_tag|>{\"name\": \"a\", \"parameters\": {\"x\": 1}",
			[]Call{{Name: "a", Arguments: `{"x":1}`}}, "{\"name\": \"a\", \"parameters\": {\"x\": 1}", "ended inside"},
	} {
		t.Run(c.name, func(t *testing.T) {
			bytewise := make([]string, len(c.text))
			for i := 0; i < len(c.text); i++ {
				bytewise[i] = c.text[i : i+1]
			}
			for _, pieces := range [][]string{bytewise, {c.text}} {
				run := checkStream(t, c.syntax, c.text, pieces)
				if !errors.Is(run.err, ErrBroken) || !strings.Contains(run.err.Error(), c.why) {
					t.Errorf("Close error = %v, want ErrBroken saying %q", run.err, c.why)
				}
				got := assemble(t, run.events())
				if len(pieces) == 1 {
					// In one piece, the arguments that came in the piece that broke are
					// not passed on: the calls are a prefix of those.
					for i, call := range got.Calls {
						if i < len(c.calls) && call.Name == c.calls[i].Name && strings.HasPrefix(c.calls[i].Arguments, call.Arguments) {
							got.Calls[i] = c.calls[i]
						}
					}
				}
				want := Result{Content: c.content, Calls: c.calls}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("in %d pieces: passed on %+v, want %+v", len(pieces), got, want)
				}
				if p := c.syntax.Parse(c.text); len(p.Calls) != 0 || p.Content != c.text {
					t.Errorf("Parse = %+v, want the reply as its content", p)
				}
			}
		})
	}
}

// TestStreamDepth: a call's arguments may nest as deep as encoding/json allows Parse
// to read them, and no deeper: one level more breaks the call where it is written.
func TestStreamDepth(t *testing.T) {
	for _, depth := range []int{10000, 10001} {
		args := strings.Repeat("[", depth-1) + strings.Repeat("]", depth-1)
		text := "<tool_call>{\"name\": \"a\", \"arguments\": {\"k\": " + args + "}}</tool_call>"
		want := Hermes.Parse(text)
		if (len(want.Calls) == 1) != (depth == 10000) {
			t.Fatalf("Parse of arguments %d deep: %d calls", depth, len(want.Calls))
		}
		for _, pieces := range [][]string{{text}, randomCuts(text, 1)} {
			if run := checkStream(t, Hermes, text, pieces); (run.err == nil) != (depth == 10000) {
				t.Errorf("arguments %d deep: Close error %v", depth, run.err)
			}
		}
	}
}

// TestStreamAfterClose: a closed stream takes nothing more.
func TestStreamAfterClose(t *testing.T) {
	st := Hermes.NewStream()
	st.Write("<tool_call>{\"name\": \"a\"")
	if evs, err := st.Close(); err == nil || len(evs) == 0 {
		t.Fatalf("Close = %+v, %v; want the text as content and ErrBroken", evs, err)
	}
	if evs := st.Write("more"); evs != nil {
		t.Errorf("Write after Close = %+v, want nothing", evs)
	}
	if evs, err := st.Close(); evs != nil || err != nil {
		t.Errorf("second Close = %+v, %v; want nothing", evs, err)
	}
}

// TestStreamRandomCuts: the replies above and the broken ones, cut at random places
// many times, check as FuzzParse checks them.
func TestStreamRandomCuts(t *testing.T) {
	for _, c := range streamCases {
		for seed := range uint64(200) {
			checkStream(t, c.syntax, c.text, randomCuts(c.text, seed))
		}
	}
}

// BenchmarkStream: the cost of streaming a reply with calls a token's text at a time.
func BenchmarkStream(b *testing.B) {
	text := "Let me check.\n" + strings.Repeat("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": [1, 2, 3], \"unit\": \"celsius\"}}\n</tool_call>\n", 8)
	pieces := randomCuts(text, 7)
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		st := Hermes.NewStream()
		for _, p := range pieces {
			st.Write(p)
		}
		if _, err := st.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// genReply writes a random reply of well-formed calls in syntax s, as models write
// them and worse: answer text around the calls (Hermes), white space of every kind
// between tokens, keys in any order, repeated keys, escapes, multi-byte characters,
// arguments as an object, a string of JSON text, null or absent.
func genReply(rng *rand.Rand, s Syntax) string {
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	ws := func() string {
		var b strings.Builder
		for range rng.IntN(3) {
			b.WriteString(pick(" ", "\n", "\t", "\r\n", "  "))
		}
		return b.String()
	}
	uws := func() string { return pick("", " ", "\n", "\u00a0", "\u3000", " \n ") }
	var str func() string
	str = func() string {
		var b strings.Builder
		b.WriteByte('"')
		for range rng.IntN(6) {
			b.WriteString(pick("a", "Z", " ", "é", "東京", "🗼", `\"`, `\\`, `\n`, `\u00e9`, `\ud83d\ude00`, "</tool_call>", "<tool_call>", ";", "}", "{", ",", ":"))
		}
		b.WriteByte('"')
		return b.String()
	}
	var value func(depth int) string
	value = func(depth int) string {
		switch n := rng.IntN(10); {
		case n < 3 || depth > 3:
			return pick("0", "-1", "12", "3.25", "-0.5e-3", "7E+2", "true", "false", "null", str())
		case n < 5:
			var parts []string
			for range rng.IntN(4) {
				parts = append(parts, ws()+value(depth+1)+ws())
			}
			return "[" + strings.Join(parts, ",") + ws() + "]"
		default:
			return genObject(rng, depth, ws, str, value)
		}
	}
	argsKey := map[Syntax]string{Hermes: "arguments", Llama3JSON: "parameters"}[s]
	call := func() string {
		var members []string
		members = append(members, `"name"`+ws()+":"+ws()+pick(`"get_weather"`, `"f"`, `"météo"`, `"n\u0061me"`))
		switch rng.IntN(6) {
		case 0: // absent
		case 1:
			members = append(members, `"`+argsKey+`"`+ws()+":"+ws()+"null")
		case 2:
			o := genObject(rng, 1, func() string { return "" }, str, value)
			q, _ := json.Marshal(pick("", " ", "\n") + o)
			members = append(members, `"`+argsKey+`"`+ws()+":"+ws()+string(q))
		case 3:
			members = append(members, `"`+otherArgsKey(argsKey)+`":`+genObject(rng, 1, ws, str, value))
		default:
			members = append(members, `"`+argsKey+`"`+ws()+":"+ws()+genObject(rng, 1, ws, str, value))
		}
		if rng.IntN(2) == 0 { // the name after the arguments
			members = append(members[1:], members[0])
		}
		// Keys that mean nothing, and keys repeated (which count where they first
		// appear): a repeated argsKey only where it appeared before.
		extra := []string{`"id"`, `"type"`, `"name"`}
		if len(members) == 2 && !strings.Contains(strings.Join(members, ""), `"`+otherArgsKey(argsKey)+`"`) {
			extra = append(extra, `"`+argsKey+`"`)
		}
		for range rng.IntN(3) {
			members = append(members, pick(extra...)+ws()+":"+ws()+value(1))
		}
		return "{" + ws() + strings.Join(members, ws()+","+ws()) + ws() + "}"
	}
	var b strings.Builder
	n := 1 + rng.IntN(3)
	if s == Llama3JSON {
		b.WriteString(uws() + pick("", "<|python_tag|>") + uws())
		for i := range n {
			if i > 0 {
				b.WriteString(uws() + ";" + uws())
			}
			b.WriteString(call())
		}
		b.WriteString(pick("", ";", " ; \n") + uws())
		return b.String()
	}
	for range n {
		b.WriteString(pick("", "Let me look.", "\n", " A é ", "<tool", "x</tool_call>") + uws())
		b.WriteString("<tool_call>" + ws() + call() + uws() + "</tool_call>")
	}
	b.WriteString(pick("", "\n", " Done. ", "\u00a0"))
	if rng.IntN(4) == 0 {
		// a last block left unclosed, or cut in its closing tag
		b.WriteString("<tool_call>" + ws() + call() + uws() + "</tool_call>"[:rng.IntN(len("</tool_call>"))])
	}
	return b.String()
}

// genObject is a random JSON object.
func genObject(rng *rand.Rand, depth int, ws, str func() string, value func(int) string) string {
	var parts []string
	for range rng.IntN(4) {
		parts = append(parts, ws()+str()+ws()+":"+ws()+value(depth+1)+ws())
	}
	return "{" + strings.Join(parts, ",") + ws() + "}"
}

// TestStreamGenerated: random replies of well-formed calls (see genReply), cut at
// random places, are passed on exactly as Parse reads them, with their calls, and
// without error.
func TestStreamGenerated(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 17))
	for i := range 3000 {
		s := []Syntax{Hermes, Llama3JSON}[i%2]
		text := genReply(rng, s)
		if len(s.Parse(text).Calls) == 0 {
			t.Fatalf("generated reply %q: Parse finds no calls", text)
		}
		if run := checkStream(t, s, text, randomCuts(text, uint64(i))); run.err != nil {
			t.Fatalf("%v %q: %v", s, text, run.err)
		}
	}
}

// TestStreamGeneratedCut: the random replies cut off at every byte, as max_tokens
// cuts them, pass on exactly Parse's result, or break only where a call had begun and
// the reply is not calls (see checkStream) — and when a cut falls between calls, or
// after a call's JSON, without error.
func TestStreamGeneratedCut(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 8))
	broken := 0
	for i := range 60 {
		s := []Syntax{Hermes, Llama3JSON}[i%2]
		text := genReply(rng, s)
		for n := range len(text) + 1 {
			if run := checkStream(t, s, text[:n], randomCuts(text[:n], uint64(n))); run.err != nil {
				broken++
			}
		}
	}
	if broken == 0 {
		t.Errorf("no cut reply broke: the test does not reach the broken path")
	}
}

// TestStreamWhole: Whole counts the calls whose JSON has closed, valid — not a call
// still being read, nor one that broke — as the reply comes in byte by byte.
func TestStreamWhole(t *testing.T) {
	for _, c := range []struct {
		name   string
		syntax Syntax
		reply  string
		at     []int // the lengths of the reply after which Whole first reaches 1, 2, …
	}{
		{"hermes", Hermes, "Hi <tool_call>{\"name\": \"f\", \"arguments\": {\"s\": \"}\"}}</tool_call><tool_call>{\"name\": \"g\"}</tool_call>", []int{52, 88}},
		{"hermes broken", Hermes, "<tool_call>{\"name\": 1}</tool_call>", nil},
		{"llama3_json", Llama3JSON, "{\"name\": \"f\", \"parameters\": {}}; {\"name\": \"g\"}", []int{31, 46}},
		{"llama3_json answer", Llama3JSON, "No {\"name\": \"f\"}", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := c.syntax.NewStream()
			var at []int
			for i := range len(c.reply) {
				before := st.Whole()
				st.Write(c.reply[i : i+1])
				if st.Whole() != before {
					at = append(at, i+1)
				}
			}
			if !slices.Equal(at, c.at) {
				t.Errorf("Whole grew after %v bytes of %q, want %v", at, c.reply, c.at)
			}
		})
	}
}
