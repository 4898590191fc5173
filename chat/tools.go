package chat

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/ardanlabs/jinja"
)

// Tool is one tool a request offers the model, in the shape of OpenAI's tools. The
// template sees it as vLLM passes it (the request's tool, dumped): a dict of type and
// function, the function a dict of name, description and parameters, description and
// parameters None when unset.
type Tool struct {
	Type     string // "function"; empty is taken as that
	Function FunctionDefinition
}

// FunctionDefinition describes a function the model may call.
type FunctionDefinition struct {
	Name        string
	Description string // "": None
	// Parameters is a JSON Schema as JSON text ("": None); the template gets the
	// value it spells.
	Parameters string
}

// Limits on a request's tools (see CheckTools).
const (
	MaxTools        = 128
	maxToolName     = 64
	maxSchemaDepth  = 64
	jsonSchemaTypes = "string number integer boolean object array null"
)

// FieldError is what CheckTools finds wrong: the field, as a path from the list of
// tools ("[2].function.name"), and why.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return "tools" + e.Field + ": " + e.Msg }

// CheckTools validates tools as a request offers them, returning a *FieldError for
// the first bad one: more than MaxTools; a type other than "function"; a name that is
// empty, longer than 64 or has other characters than letters, digits, "_" and "-"
// (OpenAI's rule), or repeats an earlier tool's; parameters that are not a JSON
// object, whose type is not "object", or whose nested schemas (properties, items,
// additionalProperties, anyOf, oneOf, allOf, $defs, definitions) name a type that is
// not one of JSON Schema's.
func CheckTools(tools []Tool) error {
	if len(tools) > MaxTools {
		return &FieldError{Field: "", Msg: fmt.Sprintf("%d tools: at most %d", len(tools), MaxTools)}
	}
	seen := make(map[string]int, len(tools))
	for i, t := range tools {
		at := fmt.Sprintf("[%d]", i)
		if t.Type != "" && t.Type != "function" {
			return &FieldError{Field: at + ".type", Msg: fmt.Sprintf("%q: only function tools", t.Type)}
		}
		name := t.Function.Name
		switch {
		case name == "":
			return &FieldError{Field: at + ".function.name", Msg: "empty: name the function"}
		case len(name) > maxToolName:
			return &FieldError{Field: at + ".function.name", Msg: fmt.Sprintf("%d bytes: at most %d", len(name), maxToolName)}
		case strings.IndexFunc(name, func(r rune) bool { return !isNameRune(r) }) >= 0:
			return &FieldError{Field: at + ".function.name", Msg: fmt.Sprintf("%q: only letters, digits, _ and -", name)}
		}
		if j, dup := seen[name]; dup {
			return &FieldError{Field: at + ".function.name", Msg: fmt.Sprintf("%q is also the name of tool %d", name, j)}
		}
		seen[name] = i
		if t.Function.Parameters == "" {
			continue
		}
		var schema any
		if err := json.Unmarshal([]byte(t.Function.Parameters), &schema); err != nil {
			return &FieldError{Field: at + ".function.parameters", Msg: fmt.Sprintf("not JSON: %v", err)}
		}
		obj, ok := schema.(map[string]any)
		if !ok {
			return &FieldError{Field: at + ".function.parameters", Msg: "not a JSON object: want a JSON Schema of type object"}
		}
		if typ, ok := obj["type"]; ok && typ != "object" {
			return &FieldError{Field: at + ".function.parameters.type", Msg: fmt.Sprintf("%v: the parameters' schema must be of type object", typ)}
		}
		if f, msg := checkSchema(obj, 0); msg != "" {
			return &FieldError{Field: at + ".function.parameters" + f, Msg: msg}
		}
	}
	return nil
}

func isNameRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-'
}

// checkSchema checks the type keywords of the JSON Schema s and its subschemas,
// returning the path of the first bad one and why ("" when all are good).
func checkSchema(s map[string]any, depth int) (field, msg string) {
	if depth > maxSchemaDepth {
		return "", fmt.Sprintf("schemas nested deeper than %d", maxSchemaDepth)
	}
	if typ, ok := s["type"]; ok {
		if msg := checkType(typ); msg != "" {
			return ".type", msg
		}
	}
	sub := func(key string, v any) (string, string) {
		obj, ok := v.(map[string]any)
		if !ok {
			return key, "not a JSON Schema object"
		}
		f, m := checkSchema(obj, depth+1)
		return key + f, m
	}
	for _, key := range []string{"properties", "$defs", "definitions"} {
		v, ok := s[key]
		if !ok {
			continue
		}
		m, ok := v.(map[string]any)
		if !ok {
			return "." + key, "not an object of schemas"
		}
		for name, schema := range m {
			if f, msg := sub(fmt.Sprintf(".%s.%s", key, name), schema); msg != "" {
				return f, msg
			}
		}
	}
	for _, key := range []string{"items", "additionalProperties", "additionalItems"} {
		v, ok := s[key]
		if !ok {
			continue
		}
		if _, isBool := v.(bool); isBool {
			continue
		}
		if list, isList := v.([]any); isList && key == "items" { // the older tuple form
			for i, schema := range list {
				if f, msg := sub(fmt.Sprintf(".items[%d]", i), schema); msg != "" {
					return f, msg
				}
			}
			continue
		}
		if f, msg := sub("."+key, v); msg != "" {
			return f, msg
		}
	}
	for _, key := range []string{"anyOf", "oneOf", "allOf", "prefixItems"} {
		v, ok := s[key]
		if !ok {
			continue
		}
		list, ok := v.([]any)
		if !ok {
			return "." + key, "not a list of schemas"
		}
		for i, schema := range list {
			if f, msg := sub(fmt.Sprintf(".%s[%d]", key, i), schema); msg != "" {
				return f, msg
			}
		}
	}
	return "", ""
}

// checkType checks the value of a schema's type keyword: a JSON Schema type name, or
// a non-empty list of them.
func checkType(typ any) string {
	switch t := typ.(type) {
	case string:
		if !isSchemaType(t) {
			return fmt.Sprintf("%q is not a JSON Schema type (%s)", t, jsonSchemaTypes)
		}
		return ""
	case []any:
		if len(t) == 0 {
			return "an empty list of types"
		}
		for _, x := range t {
			s, ok := x.(string)
			if !ok || !isSchemaType(s) {
				return fmt.Sprintf("%v is not a JSON Schema type (%s)", x, jsonSchemaTypes)
			}
		}
		return ""
	}
	return fmt.Sprintf("%v: want a type name or a list of them", typ)
}

func isSchemaType(s string) bool {
	return s != "" && !strings.Contains(s, " ") && strings.Contains(" "+jsonSchemaTypes+" ", " "+s+" ")
}

// toolsValue is tools as the template sees them: None when there are none, else a
// list of dicts as Tool describes. The parameters are parsed as a call's arguments
// are (argumentsValue), so the template's tojson prints them in their order.
func toolsValue(tools []Tool) (jinja.Value, error) {
	if len(tools) == 0 {
		return jinja.None(), nil
	}
	list := make([]jinja.Value, len(tools))
	for i, t := range tools {
		fn := jinja.NewDict()
		fn.AsDict().Set("name", jinja.NewString(t.Function.Name))
		desc := jinja.None()
		if t.Function.Description != "" {
			desc = jinja.NewString(t.Function.Description)
		}
		fn.AsDict().Set("description", desc)
		params := jinja.None()
		if t.Function.Parameters != "" {
			v, err := argumentsValue(t.Function.Parameters)
			if err != nil {
				return jinja.Undefined(), fmt.Errorf("tool %d (%q) parameters: %w", i, t.Function.Name, err)
			}
			params = v
		}
		fn.AsDict().Set("parameters", params)
		typ := t.Type
		if typ == "" {
			typ = "function"
		}
		d := jinja.NewDict()
		d.AsDict().Set("type", jinja.NewString(typ))
		d.AsDict().Set("function", fn)
		list[i] = d
	}
	return jinja.NewList(list), nil
}
