package chat

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"

	"github.com/ardanlabs/jinja"
)

// Bounds on a request's template variables (vLLM's chat_template_kwargs): the JSON
// text of the object, and the nesting of arrays and objects in it (a member's value is
// at depth 1, the items of an array there at depth 2).
const (
	MaxVarsBytes = 16 << 10
	MaxVarsDepth = 16
)

// ErrVars: a request's template variables are not a JSON object, are too big or too
// deeply nested, or name a variable the renderer sets itself. ParseVars returns it
// wrapped with the reason.
var ErrVars = errors.New("bad chat template variables")

// ErrContinue: the final message cannot be continued (Options.ContinueFinal): it is not
// the assistant's, it is empty, the generation prompt was asked for too, or the template
// does not render its content as it is. Render returns it wrapped with the reason.
var ErrContinue = errors.New("cannot continue the final message")

// reserved are the names a request's variables may not take: the variables and globals
// Render sets, and the engine's own globals and literals.
var reserved = map[string]bool{
	"messages": true, "tools": true, "documents": true, "add_generation_prompt": true,
	"continue_final_message": true, "bos_token": true, "eos_token": true,
	"raise_exception": true, "strftime_now": true, "range": true,
	"namespace": true, "dict": true, "loop": true, "cycler": true, "joiner": true, "lipsum": true,
	"true": true, "false": true, "none": true, "True": true, "False": true, "None": true,
}

// Vars are extra variables for a chat template (vLLM's chat_template_kwargs, such as
// Qwen3's enable_thinking), checked by ParseVars. The zero Vars sets none.
type Vars struct {
	text string // a JSON object ParseVars accepted; "" for none
}

// ParseVars checks text, a JSON object whose members become template variables, each
// value as Python's json.loads reads it. Empty text, "null" and "{}" set none. Errors
// wrap ErrVars: text that is not one JSON object, more than MaxVarsBytes, values nested
// deeper than MaxVarsDepth, a name that is not an identifier, or one the renderer sets
// itself (messages, tools, documents, add_generation_prompt, bos_token, eos_token, its
// functions and the engine's globals) or that starts with "specd_".
func ParseVars(text string) (Vars, error) {
	if len(text) > MaxVarsBytes {
		return Vars{}, fmt.Errorf("%w: %d bytes of JSON: at most %d", ErrVars, len(text), MaxVarsBytes)
	}
	t := strings.TrimSpace(text)
	if t == "" || t == "null" {
		return Vars{}, nil
	}
	if _, err := varsValue(t); err != nil {
		return Vars{}, err
	}
	return Vars{text: t}, nil
}

// varsValue parses text (see ParseVars) into a dict of the variables. Errors wrap
// ErrVars.
func varsValue(text string) (*jinja.Dict, error) {
	if !strings.HasPrefix(text, "{") {
		return nil, fmt.Errorf("%w: want a JSON object", ErrVars)
	}
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber()
	v, err := jsonValue(dec, 0, MaxVarsDepth)
	if err == nil {
		if _, end := dec.Token(); end != io.EOF {
			err = errors.New("text after the object")
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrVars, err)
	}
	d := v.AsDict()
	for _, k := range d.OrderedKeys() {
		switch {
		case !isIdentifier(k):
			return nil, fmt.Errorf("%w: %q is not a name a template can use (letters, digits and _, not first a digit)", ErrVars, k)
		case reserved[k] || strings.HasPrefix(k, "specd_"):
			return nil, fmt.Errorf("%w: %q is set by the server, not by a request", ErrVars, k)
		}
	}
	return d, nil
}

// isIdentifier reports whether s is a Python identifier of ASCII letters, digits and
// underscores.
func isIdentifier(s string) bool {
	for i, r := range s {
		if r > unicode.MaxASCII || !(r == '_' || unicode.IsLetter(r) || i > 0 && unicode.IsDigit(r)) {
			return false
		}
	}
	return s != ""
}

// cutMarker stands for the final message's content in the rendering that finds what
// a template writes after it (see continuation): private-use characters and no white
// space, which templates neither strip nor write.
const cutMarker = "\uE000specd-continue\uE001"

// continuation cuts text, the rendering of msgs without the generation prompt, right
// after the content of the final message, as Hugging Face's apply_chat_template does
// with continue_final_message (and vLLM, which calls it): what the template writes after
// it (the end of the turn) goes. The content is looked for with its surrounding white
// space stripped, since templates often strip it, at its last place before tail, what
// the template writes after the final message, when haveTail and text ends with it (in
// all of text otherwise, as Hugging Face does); its trailing white space is kept when
// the template kept it. Errors wrap ErrContinue.
func continuation(text string, msgs []Message, tail string, haveTail bool) (string, error) {
	last := msgs[len(msgs)-1]
	content := strings.TrimLeftFunc(last.Content, unicode.IsSpace)
	core := strings.TrimRightFunc(content, unicode.IsSpace)
	if core == "" {
		return "", fmt.Errorf("%w: the final message has no content", ErrContinue)
	}
	search := text
	if haveTail && strings.HasSuffix(text, tail) {
		search = text[:len(text)-len(tail)]
	}
	at := strings.LastIndex(search, core)
	if at < 0 {
		return "", fmt.Errorf("%w: the chat template does not render the final message's content as it is (it changes or drops it)", ErrContinue)
	}
	if strings.HasPrefix(text[at:], content) {
		return text[:at+len(content)], nil
	}
	return text[:at+len(core)], nil
}
