// Package toolcall finds the tool calls in a model's generated text, in the syntax a
// model family was trained to write them, as vLLM's tool parsers do: Hermes's
// <tool_call>{"name": ..., "arguments": ...}</tool_call> blocks (Qwen2.5, Hermes) and
// Llama 3.1's bare JSON objects {"name": ..., "parameters": ...}.
//
// Parse reads a whole reply; Stream reads one as it is generated and passes on each
// call's name and then its arguments piece by piece, as vLLM's and OpenAI's streams
// do, so that what it passes on is what Parse gives for the whole.
//
// The generated text is untrusted: a malformed call is not an error but text, so a
// reply that does not parse as calls is returned as the model's plain answer. The
// package is deterministic and knows nothing of HTTP, gRPC or tokenizers; call ids are
// the caller's to make.
package toolcall

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// Call is one tool call found in the text.
type Call struct {
	Name string
	// Arguments is the call's arguments as compact JSON text, an object ("{}" when
	// the model gave none), as OpenAI's API carries them.
	Arguments string
}

// Result is what a text holds: Calls, and Content, the text outside them. Without
// calls, Content is the text unchanged. With calls, Content is the text before, between
// and after them (blank runs between and after dropped, trailing white space
// trimmed); "" means there is none (OpenAI's null).
type Result struct {
	Content string
	Calls   []Call
}

// Syntax is a way of writing tool calls.
type Syntax int

const (
	// Hermes: each call a <tool_call> block holding one JSON object with name and
	// arguments, the text around them the answer, as Qwen2.5's template asks for. A
	// last block left unclosed (the model stopped after its JSON, or max_tokens cut
	// its closing tag) still counts.
	Hermes Syntax = iota + 1
	// Llama3JSON: the whole reply is calls, each a JSON object with name and
	// parameters, separated by ";" and optionally preceded by <|python_tag|>, as
	// Llama 3.1 writes them; a reply that starts otherwise is an answer.
	Llama3JSON
)

// ErrUnknownSyntax: ParseSyntax does not know the name.
var ErrUnknownSyntax = errors.New("unknown tool call parser")

// Names lists the syntaxes by the names vLLM's --tool-call-parser gives them.
var Names = map[string]Syntax{"hermes": Hermes, "llama3_json": Llama3JSON}

// ParseSyntax is the syntax vLLM's --tool-call-parser calls name ("hermes",
// "llama3_json"). Errors wrap ErrUnknownSyntax.
func ParseSyntax(name string) (Syntax, error) {
	if s, ok := Names[name]; ok {
		return s, nil
	}
	return 0, fmt.Errorf("%w %q: want hermes or llama3_json", ErrUnknownSyntax, name)
}

// String is the syntax's name.
func (s Syntax) String() string {
	for name, x := range Names {
		if x == s {
			return name
		}
	}
	return fmt.Sprintf("Syntax(%d)", int(s))
}

// Markup of the syntaxes.
const (
	hermesOpen  = "<tool_call>"
	hermesClose = "</tool_call>"
	pythonTag   = "<|python_tag|>"
)

// Parse finds the tool calls in text, the whole of a reply.
func (s Syntax) Parse(text string) Result {
	var r Result
	var ok bool
	switch s {
	case Hermes:
		r, ok = parseHermes(text)
	case Llama3JSON:
		r, ok = parseLlama3(text)
	}
	if !ok || len(r.Calls) == 0 {
		return Result{Content: text}
	}
	return r
}

// parseHermes reads text as answer and <tool_call> blocks; ok is false when a block
// is malformed.
func parseHermes(text string) (Result, bool) {
	var r Result
	var outside strings.Builder
	rest := text
	first := true
	for {
		i := strings.Index(rest, hermesOpen)
		if i < 0 {
			addOutside(&outside, rest, first)
			break
		}
		addOutside(&outside, rest[:i], first)
		first = false
		rest = rest[i+len(hermesOpen):]
		call, n, err := readCall(rest, "arguments")
		if err != nil {
			return Result{}, false
		}
		r.Calls = append(r.Calls, call)
		rest = strings.TrimLeftFunc(rest[n:], unicode.IsSpace)
		if len(rest) < len(hermesClose) && strings.HasPrefix(hermesClose, rest) {
			break // a last block left unclosed, or cut in its closing tag (by max_tokens)
		}
		if !strings.HasPrefix(rest, hermesClose) {
			return Result{}, false
		}
		rest = rest[len(hermesClose):]
	}
	r.Content = strings.TrimRightFunc(outside.String(), unicode.IsSpace)
	return r, true
}

// addOutside adds a run of text outside the calls to b: the one before the first call
// as it is, a later one only if it is not blank.
func addOutside(b *strings.Builder, s string, first bool) {
	if first || strings.TrimSpace(s) != "" {
		b.WriteString(s)
	}
}

// parseLlama3 reads text as Llama 3.1's calls; ok is false when it is not only calls.
func parseLlama3(text string) (Result, bool) {
	rest := strings.TrimLeftFunc(text, unicode.IsSpace)
	rest = strings.TrimPrefix(rest, pythonTag)
	var r Result
	for {
		rest = strings.TrimLeftFunc(rest, unicode.IsSpace)
		if !strings.HasPrefix(rest, "{") {
			return Result{}, false
		}
		call, n, err := readCall(rest, "parameters")
		if err != nil {
			return Result{}, false
		}
		r.Calls = append(r.Calls, call)
		rest = strings.TrimLeftFunc(rest[n:], unicode.IsSpace)
		if rest == "" {
			return r, true
		}
		if rest[0] != ';' {
			return Result{}, false
		}
		rest = rest[1:]
		if strings.TrimSpace(rest) == "" {
			return r, true // a trailing separator
		}
	}
}

// readCall decodes the JSON object at the start of s (after white space) as a call:
// a non-empty string name, and its arguments under argsKey (or the other syntax's
// key, "arguments" or "parameters", as models mix them up) as an object, a string
// holding an object's JSON text, or absent. A key that repeats counts where it first
// appears: the later ones are ignored (RFC 8259 leaves repeated names to the reader),
// so that a call streamed as it is written never changes after its name was sent.
// It returns the call and the bytes of s it read.
func readCall(s string, argsKey string) (Call, int, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return Call{}, 0, errors.New("not a JSON object")
	}
	var name, args, other json.RawMessage
	var hasName, hasArgs, hasOther bool
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return Call{}, 0, fmt.Errorf("not a JSON object: %w", err)
		}
		key, _ := t.(string) // a key, or Token failed
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return Call{}, 0, fmt.Errorf("not a JSON object: %w", err)
		}
		switch {
		case key == "name" && !hasName:
			name, hasName = v, true
		case key == argsKey && !hasArgs:
			args, hasArgs = v, true
		case key == otherArgsKey(argsKey) && !hasOther:
			other, hasOther = v, true
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return Call{}, 0, fmt.Errorf("not a JSON object: %w", err)
	}
	n := int(dec.InputOffset())
	fn, err := callName(name)
	if err != nil {
		return Call{}, 0, err
	}
	if !hasArgs {
		args, hasArgs = other, hasOther
	}
	a, err := canonicalArgs(args, hasArgs)
	if err != nil {
		return Call{}, 0, err
	}
	return Call{Name: fn, Arguments: a}, n, nil
}

// otherArgsKey is the key of a call's arguments in the syntax that does not use key.
func otherArgsKey(key string) string {
	if key == "parameters" {
		return "arguments"
	}
	return "parameters"
}

// callName is the function name whose JSON value is raw: a non-empty string.
func callName(raw []byte) (string, error) {
	var name string
	if err := json.Unmarshal(raw, &name); err != nil || name == "" {
		return "", errors.New("no function name")
	}
	return name, nil
}

// canonicalArgs is a call's arguments, whose JSON value is raw (present: the call
// has them), as compact JSON text of an object: "{}" when absent or null; an object
// as written less its white space; a string holding an object's JSON text, that text
// so compacted.
func canonicalArgs(raw []byte, present bool) (string, error) {
	if !present || string(raw) == "null" {
		return "{}", nil
	}
	if bytes.HasPrefix(raw, []byte(`"`)) {
		// Some models write the arguments as OpenAI's API carries them: an object's
		// JSON text in a string.
		var text string
		if err := json.Unmarshal(raw, &text); err != nil {
			return "", err
		}
		raw = []byte(strings.TrimSpace(text))
		if !json.Valid(raw) {
			return "", errors.New("arguments are a string that is not JSON")
		}
	}
	if !bytes.HasPrefix(raw, []byte("{")) {
		return "", errors.New("arguments are not a JSON object")
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return "", err
	}
	return b.String(), nil
}
