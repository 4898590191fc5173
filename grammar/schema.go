package grammar

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// typeSet is a set of JSON types a value may take.
type typeSet uint8

const (
	tObject typeSet = 1 << iota
	tArray
	tString
	tNumber  // any number
	tInteger // a number without fraction or exponent
	tBoolean
	tNull

	tAll = tObject | tArray | tString | tNumber | tInteger | tBoolean | tNull
)

var typeNames = map[string]typeSet{
	"object": tObject, "array": tArray, "string": tString, "number": tNumber | tInteger,
	"integer": tInteger, "boolean": tBoolean, "null": tNull,
}

// node is a compiled schema: what one JSON value may be.
type node struct {
	types typeSet
	// Objects: the declared properties (at most maxProps), and the schema of any other
	// key (nil: no other key).
	props []prop
	extra *node
	// keys: what every key must be (propertyNames; nil: any string). The names of
	// props are each one of them.
	keys *strRule
	// minProps and maxProps bound the number of keys (maxProps < 0: no bound).
	minProps, maxProps int
	// Arrays: the schemas of the first items (prefixItems), the schema of every item
	// after them (nil: none), and bounds on their number (maxItems < 0: none). With
	// unique, items is an enum and no value is given twice.
	prefix             []*node
	items              *node
	minItems, maxItems int
	unique             bool
	// Strings: what their characters may be (nil: anything).
	str *strRule
	// Integers: bounded, every integer the value may be is in [lo, hi] (minimum,
	// maximum and their exclusive forms, on a schema whose numbers are integers), and a
	// multiple of mult (when above 1).
	bounded bool
	lo, hi  int64
	mult    int64
	// Numbers that may have a fraction: the bounds they are within (nil: none); such a
	// number is written without an exponent.
	real *realBounds
	// enum, when not nil, lists the value's only possible encodings (compact JSON),
	// sorted, each once.
	enum []string
	// anyOf, when not nil, replaces everything above: the value matches one of them.
	anyOf []*node
}

type prop struct {
	key      string // the name as it stands between the quotes (JSON-escaped)
	name     string // the name itself
	schema   *node
	required bool
}

// maxProps bounds the properties of one object schema (a bit each in a frame).
const maxProps = 64

// anyValue is the schema of any JSON value.
var anyValue = func() *node {
	n := &node{types: tAll, maxItems: -1, maxProps: -1}
	n.extra, n.items = n, n
	return n
}()

// anyObject is the schema of json_object: any JSON object.
var anyObject = &node{types: tObject, extra: anyValue, items: anyValue, maxItems: -1, maxProps: -1}

// annotations are keywords that say nothing a value must satisfy: ignored.
var annotations = map[string]bool{
	"title": true, "description": true, "$schema": true, "$id": true, "$comment": true,
	"examples": true, "default": true, "deprecated": true, "readOnly": true, "writeOnly": true,
	"$defs": true, "definitions": true, "strict": true, "$anchor": true,
	"contentEncoding": true, "contentMediaType": true,
	// OpenAPI's hint beside oneOf (Pydantic's discriminated unions): JSON Schema's
	// validators ignore it, and the branches' consts tell them apart.
	"discriminator": true,
}

// compiler turns a JSON Schema document into nodes.
type compiler struct {
	root map[string]any
	refs map[string]*node // compiled "$ref" targets, by pointer
	// unions are the anyOf nodes, to check their width once every reference is
	// compiled; uniques the arrays of unique items, to check their items then.
	unions  []union
	uniques []union
	// merged are the schemas compiled from an allOf (or a $ref with siblings), by
	// their JSON, so that a recursive one compiles to a cycle as a $ref does.
	merged map[string]*node
	nodes  int // schemas compiled, against maxNodes
	// patterns are the pattern automata compiled, by minimum length and pattern;
	// table the entries of their tables, against maxSchemaTable.
	patterns map[patternKey]*patternRule
	table    int
}

type patternKey struct {
	pattern string
	minLen  int
}

// maxSchemaTable bounds the entries of all the pattern automata of one schema.
const maxSchemaTable = 4 * maxPatternTable

type union struct {
	n  *node
	at string
}

// compileSchema compiles a JSON Schema document (the subset described in the package
// comment) or says which part it cannot take.
func compileSchema(doc []byte) (*node, error) {
	d := json.NewDecoder(bytes.NewReader(doc))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("%w: not JSON: %v", ErrSchema, err)
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: not JSON: text after the schema", ErrSchema)
	}
	c := &compiler{refs: map[string]*node{}, merged: map[string]*node{}, patterns: map[patternKey]*patternRule{}}
	if m, ok := v.(map[string]any); ok {
		c.root = m
	}
	n, err := c.compile(v, "")
	if err != nil {
		return nil, err
	}
	if err := checkLoops(n); err != nil {
		return nil, err
	}
	for _, u := range c.unions {
		if w := width(u.n); w > maxAlts {
			return nil, c.errorf(u.at, "%d branches may begin with the same byte: at most %d", w, maxAlts)
		}
	}
	for _, u := range c.uniques {
		if err := c.unique(u.n, u.at); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// checkLoops refuses references that lead back to where they started before any byte
// of a value: a $ref to itself, or anyOf branches that contain their own schema (the
// matcher would try them forever).
func checkLoops(root *node) error {
	const (
		unseen = iota
		open
		done
	)
	state := map[*node]int{}
	var visit func(n *node) error
	visit = func(n *node) error {
		switch state[n] {
		case open:
			return fmt.Errorf("%w: a $ref or anyOf leads back to itself before any value", ErrSchema)
		case done:
			return nil
		}
		if n.types == 0 && n.anyOf == nil && n.enum == nil {
			return fmt.Errorf("%w: a $ref refers to nothing but itself", ErrSchema)
		}
		state[n] = open
		for _, a := range n.anyOf {
			if err := visit(a); err != nil {
				return err
			}
		}
		state[n] = done
		// Below a value's first byte a loop is a recursive schema: fine.
		for _, next := range append(append([]*node{n.items, n.extra}, n.prefix...), propSchemas(n)...) {
			if next != nil && state[next] == unseen {
				if err := visit(next); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return visit(root)
}

func propSchemas(n *node) []*node {
	out := make([]*node, len(n.props))
	for i, p := range n.props {
		out[i] = p.schema
	}
	return out
}

// ErrSchema is wrapped by every error about a schema.
var ErrSchema = errors.New("unsupported JSON schema")

func (c *compiler) errorf(at, format string, args ...any) error {
	if at == "" {
		at = "the root"
	}
	return fmt.Errorf("%w at %s: %s", ErrSchema, at, fmt.Sprintf(format, args...))
}

func (c *compiler) compile(v any, at string) (*node, error) {
	switch s := v.(type) {
	case bool:
		if !s {
			return nil, c.errorf(at, "false matches nothing")
		}
		return anyValue, nil
	case map[string]any:
		return c.compileObject(s, at)
	}
	return nil, c.errorf(at, "a schema is an object or a boolean, not %s", jsonKind(v))
}

// keywords are the asserting keywords the compiler takes.
var keywords = map[string]bool{
	"type": true, "properties": true, "required": true, "additionalProperties": true,
	"minProperties": true, "maxProperties": true,
	"items": true, "prefixItems": true, "additionalItems": true, "minItems": true, "maxItems": true, "uniqueItems": true,
	"enum": true, "const": true, "anyOf": true, "oneOf": true, "allOf": true, "$ref": true, "nullable": true,
	"minimum": true, "maximum": true, "exclusiveMinimum": true, "exclusiveMaximum": true, "multipleOf": true,
	"minLength": true, "maxLength": true, "format": true, "pattern": true, "propertyNames": true,
}

// maxNodes bounds the schemas one document compiles to: allOf and the distribution of
// a union's siblings copy schemas, and a hostile document could make that exponential.
const maxNodes = 1 << 14

func (c *compiler) compileObject(s map[string]any, at string) (*node, error) {
	if c.nodes++; c.nodes > maxNodes {
		return nil, c.errorf(at, "the schema compiles to more than %d schemas", maxNodes)
	}
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	asserting := 0
	for _, k := range keys {
		switch {
		case annotations[k]:
		case keywords[k]:
			asserting++
		default:
			return nil, c.errorf(at, "keyword %q is not supported", k)
		}
	}
	if nb, ok := s["nullable"]; ok {
		if _, isBool := nb.(bool); !isBool {
			return nil, c.errorf(at+"/nullable", "a boolean, not %s", jsonKind(nb))
		}
	}
	_, hasAll := s["allOf"]
	_, hasRef := s["$ref"]
	_, hasType := s["type"]
	switch {
	case s["nullable"] == true && !hasType:
		// OpenAPI's nullable: true beside no type (a $ref, a union): the schema or null.
		return c.compile(map[string]any{"anyOf": []any{without(s, "nullable"), map[string]any{"type": "null"}}}, at)
	case hasAll || hasRef && asserting > 1:
		return c.allOf(s, at)
	case hasRef:
		return c.ref(s["$ref"], at)
	}
	for _, k := range []string{"anyOf", "oneOf"} {
		alts, ok := s[k]
		if !ok {
			continue
		}
		list, ok := alts.([]any)
		if !ok || len(list) == 0 {
			return nil, c.errorf(at, "%s is a non-empty array of schemas", k)
		}
		if asserting > 1 {
			return c.distribute(s, k, list, at)
		}
		n := &node{}
		var values *node // the enum and const branches, as one enum
		for i, a := range list {
			b, err := c.compile(a, fmt.Sprintf("%s/%s/%d", at, k, i))
			if err != nil {
				return nil, err
			}
			switch {
			case b.enum != nil && b.anyOf == nil:
				if values == nil {
					values = &node{types: tAll, enum: []string{}}
					n.anyOf = append(n.anyOf, values)
				}
				values.enum = append(values.enum, b.enum...)
			case b.anyOf != nil:
				n.anyOf = append(n.anyOf, b.anyOf...)
			default:
				n.anyOf = append(n.anyOf, b)
			}
			// A union wider than maxAlts at every first byte is refused below; past
			// this many branches it is at some byte, and unions of unions would
			// otherwise double at each level.
			if len(n.anyOf) > maxBranches {
				return nil, c.errorf(at+"/"+k, "more than %d branches", maxBranches)
			}
		}
		if values != nil {
			values.enum = sortedSet(values.enum)
		}
		c.unions = append(c.unions, union{n, at + "/" + k})
		return n, nil
	}
	n := &node{types: tAll, extra: anyValue, items: anyValue, maxItems: -1, maxProps: -1}
	if t, ok := s["type"]; ok {
		ts, err := c.types(t, at)
		if err != nil {
			return nil, err
		}
		n.types = ts
		if s["nullable"] == true {
			n.types |= tNull
		}
	}
	for _, part := range []func(*node, map[string]any, string) error{c.object, c.array, c.strings, c.bounds, c.multipleOf, c.values} {
		if err := part(n, s, at); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// without returns s less the keywords named.
func without(s map[string]any, names ...string) map[string]any {
	out := make(map[string]any, len(s))
	for k, v := range s {
		if !slices.Contains(names, k) {
			out[k] = v
		}
	}
	return out
}

// maxInt is the largest integer the grammar lets out: maxDigits nines.
const maxInt = 9_999_999_999_999_999

// bounds compiles minimum, maximum, exclusiveMinimum and exclusiveMaximum. Where every
// number the schema allows is an integer (zod's int(), Pydantic's conint and Field(ge=…)
// on an int) they bound n's integers exactly; where numbers may have a fraction they
// are realBounds; on a schema that allows no number they constrain nothing, as in JSON
// Schema.
func (c *compiler) bounds(n *node, s map[string]any, at string) error {
	n.lo, n.hi = -maxInt, maxInt
	var rats [4]*big.Rat
	any := false
	for i, k := range boundNames {
		v, ok := s[k]
		if !ok {
			continue
		}
		num, ok := v.(json.Number)
		if !ok {
			return c.errorf(at+"/"+k, "a number, not %s", jsonKind(v))
		}
		r, ok := new(big.Rat).SetString(num.String())
		if !ok {
			return c.errorf(at+"/"+k, "%v is not a number", v)
		}
		rats[i], any = r, true
	}
	switch {
	case !any || n.types&(tNumber|tInteger) == 0:
		return nil
	case n.types&tNumber != 0:
		b, err := newRealBounds(rats)
		if err != nil {
			return c.errorf(at, "%v", err)
		}
		n.real = b
		return nil
	}
	for i, r := range rats {
		if r == nil {
			continue
		}
		k := boundNames[i]
		// The least integer at or above a lower bound (above an exclusive one), the
		// greatest at or below an upper bound; past ±maxInt, the grammar's own bound.
		lower := k == "minimum" || k == "exclusiveMinimum"
		q, m := new(big.Int).QuoRem(r.Num(), r.Denom(), new(big.Int)) // q truncated toward zero
		switch {
		case lower && (m.Sign() > 0 || m.Sign() == 0 && k == "exclusiveMinimum"):
			q.Add(q, big.NewInt(1))
		case !lower && (m.Sign() < 0 || m.Sign() == 0 && k == "exclusiveMaximum"):
			q.Sub(q, big.NewInt(1))
		}
		b := max(-maxInt-1, min(maxInt+1, clampInt(q)))
		if lower {
			n.lo = max(n.lo, b)
		} else {
			n.hi = min(n.hi, b)
		}
		n.bounded = true
	}
	if n.bounded && n.lo > n.hi {
		return c.errorf(at, "no integer of at most %d digits is within its minimum and maximum", maxDigits)
	}
	return nil
}

// boundNames are the keywords of bounds, lower ones first.
var boundNames = [4]string{"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"}

// multipleOf compiles multipleOf on integers: an integer is a multiple of p/q (in
// lowest terms) when it is one of p. On numbers with a fraction it is refused.
func (c *compiler) multipleOf(n *node, s map[string]any, at string) error {
	v, ok := s["multipleOf"]
	if !ok || n.types&(tNumber|tInteger) == 0 {
		return nil
	}
	num, _ := v.(json.Number)
	r, ok := new(big.Rat).SetString(num.String())
	if !ok || r.Sign() <= 0 {
		return c.errorf(at+"/multipleOf", "a number above 0, not %v", v)
	}
	if n.types&tNumber != 0 {
		return c.errorf(at+"/multipleOf", "only on integers (\"type\": \"integer\"), not on numbers that may have a fraction")
	}
	if !n.bounded {
		n.bounded, n.lo, n.hi = true, -maxInt, maxInt
	}
	if p := r.Num(); p.IsInt64() && p.Int64() <= maxInt {
		n.mult = p.Int64()
	} else { // only 0 is a multiple within the grammar's integers
		n.lo, n.hi = max(n.lo, 0), min(n.hi, 0)
	}
	if !anyMultiple(n.lo, n.hi, n.mult) {
		return c.errorf(at, "no integer of at most %d digits within its bounds is a multiple of %v", maxDigits, v)
	}
	return nil
}

// strings compiles minLength, maxLength, format and pattern into n's strRule.
func (c *compiler) strings(n *node, s map[string]any, at string) error {
	minLen, maxLen := 0, -1
	for _, k := range []string{"minLength", "maxLength"} {
		v, ok := s[k]
		if !ok {
			continue
		}
		num, _ := v.(json.Number)
		i, err := num.Int64()
		if err != nil || i < 0 || i > maxLength {
			return c.errorf(at+"/"+k, "a count in [0, %d], not %v", maxLength, v)
		}
		if k == "minLength" {
			minLen = int(i)
		} else {
			maxLen = int(i)
		}
	}
	var auto charRule
	name, hasFormat := s["format"].(string)
	if hasFormat {
		auto = formats[name] // nil: an annotation
	}
	if n.types&tString == 0 {
		return nil // pattern and the rest assert nothing of other values
	}
	if maxLen >= 0 && minLen > maxLen {
		return c.errorf(at, "minLength %d is more than maxLength %d", minLen, maxLen)
	}
	what := name
	if p, ok := s["pattern"]; ok {
		src, isString := p.(string)
		switch known := zodPatterns[name][src]; {
		case !isString:
			return c.errorf(at+"/pattern", "a string, not %s", jsonKind(p))
		case known != nil:
			auto = known
		case auto != nil:
			return c.errorf(at+"/pattern", "pattern beside format %q: not supported (the two automata are not intersected), but for zod's own pattern of that format", name)
		case src != "":
			pr, err := c.pattern(src, minLen, at+"/pattern")
			if err != nil {
				return err
			}
			auto, what = pr, fmt.Sprintf("string matching pattern %q", src)
		}
	}
	if auto != nil {
		// A minimum beside a format's automaton is taken where it holds of every
		// string the automaton accepts (zod's .min(1).email()): otherwise the matcher
		// would need the longest way on from each state, to not lead where no string
		// is long enough. A pattern's automaton has the minimum folded in (up to where
		// any text may follow, which can always reach it).
		_, isPattern := auto.(*patternRule)
		if shortest := auto.rest(auto.start()); !isPattern && minLen > shortest {
			return c.errorf(at, "minLength %d beside format %s: only a minimum every %s meets (%d) is supported", minLen, name, name, shortest)
		}
		if maxLen >= 0 && auto.rest(auto.start()) > maxLen {
			return c.errorf(at, "maxLength %d: no %s has so few characters", maxLen, what)
		}
	}
	n.str = newStrRule(minLen, maxLen, auto)
	return nil
}

// pattern returns the automaton of pattern src with minimum minLen, compiled once per
// schema, or an error naming what in it is not supported.
func (c *compiler) pattern(src string, minLen int, at string) (*patternRule, error) {
	key := patternKey{src, minLen}
	if p, ok := c.patterns[key]; ok {
		return p, nil
	}
	p, err := compilePattern(src, minLen)
	var syn *SyntaxError
	switch {
	case errors.As(err, &syn):
		return nil, c.errorf(at, "%s, column %d: %s", quoteShort(src), syn.Col, syn.Msg)
	case errors.Is(err, errPatternSize):
		return nil, c.errorf(at, "%s: its automaton would have more than %d states (or %d entries, or take more than %d steps to build): too complex", quoteShort(src), maxPatternStates, maxPatternTable, maxPatternWork)
	case err != nil:
		return nil, c.errorf(at, "%s: %s", quoteShort(src), strings.TrimPrefix(err.Error(), ErrGrammar.Error()+": "))
	}
	if c.table += len(p.trans); c.table > maxSchemaTable {
		return nil, c.errorf(at, "the schema's patterns have automata of more than %d entries between them", maxSchemaTable)
	}
	c.patterns[key] = p
	return p, nil
}

// clampInt is x, or the int64 nearest to it.
func clampInt(x *big.Int) int64 {
	switch {
	case x.IsInt64():
		return x.Int64()
	case x.Sign() < 0:
		return math.MinInt64
	}
	return math.MaxInt64
}

func (c *compiler) types(t any, at string) (typeSet, error) {
	var names []any
	switch t := t.(type) {
	case string:
		names = []any{t}
	case []any:
		names = t
	default:
		return 0, c.errorf(at+"/type", "a type name or an array of them, not %s", jsonKind(t))
	}
	var ts typeSet
	for _, name := range names {
		s, _ := name.(string)
		bit, ok := typeNames[s]
		if !ok {
			return 0, c.errorf(at+"/type", "unknown type %v", name)
		}
		ts |= bit
	}
	if ts == 0 {
		return 0, c.errorf(at+"/type", "an empty list of types matches nothing")
	}
	return ts, nil
}

// object compiles properties, required and additionalProperties. With properties and
// no additionalProperties, no other key is allowed (as OpenAI's strict schemas and
// llama.cpp's grammars have it), so that the model cannot wander off the schema.
func (c *compiler) object(n *node, s map[string]any, at string) error {
	props, hasProps := s["properties"]
	if hasProps {
		m, ok := props.(map[string]any)
		if !ok {
			return c.errorf(at+"/properties", "an object, not %s", jsonKind(props))
		}
		if len(m) > maxProps {
			return c.errorf(at+"/properties", "%d properties: at most %d", len(m), maxProps)
		}
		names := make([]string, 0, len(m))
		for k := range m {
			names = append(names, k)
		}
		slices.Sort(names)
		for _, name := range names {
			sub, err := c.compile(m[name], at+"/properties/"+name)
			if err != nil {
				return err
			}
			n.props = append(n.props, prop{key: escapeKey(name), name: name, schema: sub})
		}
		n.extra = nil
	}
	if req, ok := s["required"]; ok {
		list, ok := req.([]any)
		if !ok {
			return c.errorf(at+"/required", "an array of property names, not %s", jsonKind(req))
		}
		for _, r := range list {
			name, _ := r.(string)
			i := slices.IndexFunc(n.props, func(p prop) bool { return p.key == escapeKey(name) })
			if i < 0 {
				return c.errorf(at+"/required", "%v is not among the properties", r)
			}
			n.props[i].required = true
		}
	}
	if ap, ok := s["additionalProperties"]; ok {
		if b, ok := ap.(bool); ok && !b {
			n.extra = nil
		} else {
			sub, err := c.compile(ap, at+"/additionalProperties")
			if err != nil {
				return err
			}
			n.extra = sub
		}
	}
	if pn, ok := s["propertyNames"]; ok {
		if err := c.propertyNames(n, pn, at+"/propertyNames"); err != nil {
			return err
		}
	}
	var err error
	if n.minProps, n.maxProps, err = c.counts(s, "minProperties", "maxProperties", at); err != nil {
		return err
	}
	required := 0
	for _, p := range n.props {
		if p.required {
			required++
		}
	}
	switch {
	case n.types&tObject == 0:
	case n.extra == nil && n.minProps > len(n.props):
		return c.errorf(at, "minProperties %d: only %d properties are allowed", n.minProps, len(n.props))
	case n.maxProps >= 0 && required > n.maxProps:
		return c.errorf(at, "maxProperties %d: %d properties are required", n.maxProps, required)
	}
	return nil
}

// maxKeyChars bounds the characters of a key under propertyNames: at most 4 bytes each
// as written, it stays within maxKey bytes, so that the bound on the text never cuts a
// key its rule would still take.
const maxKeyChars = maxKey / 4

// propertyNames compiles the schema every key of object n must match (zod's z.record
// with a key schema): a string's type, pattern, minLength and maxLength (at most
// maxKeyChars), enforced on the keys other than n's properties, whose names must match
// it. Anything else in it is refused.
func (c *compiler) propertyNames(n *node, v any, at string) error {
	if v == true {
		return nil
	}
	s, ok := v.(map[string]any)
	if !ok {
		return c.errorf(at, "a schema of type string with pattern, minLength or maxLength, not %s", jsonKind(v))
	}
	for _, k := range slices.Sorted(maps.Keys(s)) {
		switch {
		case annotations[k], k == "pattern", k == "minLength", k == "maxLength":
		case k == "type" && s[k] == "string":
		default:
			return c.errorf(at, "keyword %q: only type string, pattern, minLength and maxLength are supported here", k)
		}
	}
	key := &node{types: tString}
	if err := c.strings(key, s, at); err != nil {
		return err
	}
	r := key.str
	if r == nil {
		return nil
	}
	if r.max < 0 || r.max > maxKeyChars {
		r.max = maxKeyChars
	}
	if r.auto == nil { // lengths alone: any characters, so that the mask's walks apply
		any, err := c.pattern(`^[^]*$`, r.min, at)
		if err != nil {
			return err
		}
		r.auto = any
	}
	if r.auto != nil && r.auto.rest(r.auto.start()) > r.max || r.min > r.max {
		return c.errorf(at, "no key of at most %d characters matches", r.max)
	}
	for _, p := range n.props {
		if !r.matches(p.name) || strings.Contains(p.key, `\u`) {
			return c.errorf(at, "property %q is not one of the names propertyNames allows (as written without \\u escapes, at most %d characters)", p.name, r.max)
		}
	}
	n.keys = &strRule{min: r.min, max: r.max, auto: r.auto}
	return nil
}

// counts compiles a pair of minimum and maximum counts (of items, keys): the maximum
// is -1 when absent.
func (c *compiler) counts(s map[string]any, minName, maxName, at string) (lo, hi int, err error) {
	lo, hi = 0, -1
	for _, k := range []string{minName, maxName} {
		v, ok := s[k]
		if !ok {
			continue
		}
		num, _ := v.(json.Number)
		i, err := num.Int64()
		if err != nil || i < 0 || i > 1<<20 {
			return 0, 0, c.errorf(at+"/"+k, "a count in [0, %d], not %v", 1<<20, v)
		}
		if k == minName {
			lo = int(i)
		} else {
			hi = int(i)
		}
	}
	if hi >= 0 && lo > hi {
		return 0, 0, c.errorf(at, "%s %d is more than %s %d", minName, lo, maxName, hi)
	}
	return lo, hi, nil
}

// array compiles items, prefixItems (or draft 7's items array with additionalItems),
// minItems, maxItems and uniqueItems.
func (c *compiler) array(n *node, s map[string]any, at string) error {
	prefix, hasPrefix := s["prefixItems"]
	items, hasItems := s["items"]
	itemsAt := at + "/items"
	if list, ok := items.([]any); ok {
		// Draft 7's tuple, as Pydantic 1 and zod-to-json-schema write it.
		if hasPrefix {
			return c.errorf(at+"/items", "an array beside prefixItems")
		}
		prefix, hasPrefix = list, true
		items, hasItems = s["additionalItems"]
		itemsAt = at + "/additionalItems"
	}
	if hasPrefix {
		list, ok := prefix.([]any)
		if !ok {
			return c.errorf(at+"/prefixItems", "an array of schemas, not %s", jsonKind(prefix))
		}
		if len(list) > 1<<10 {
			return c.errorf(at+"/prefixItems", "%d schemas: at most %d", len(list), 1<<10)
		}
		for i, p := range list {
			sub, err := c.compile(p, fmt.Sprintf("%s/prefixItems/%d", at, i))
			if err != nil {
				return err
			}
			n.prefix = append(n.prefix, sub)
		}
	}
	if hasItems {
		if b, ok := items.(bool); ok && !b {
			n.items = nil
		} else {
			sub, err := c.compile(items, itemsAt)
			if err != nil {
				return err
			}
			n.items = sub
		}
	}
	var err error
	if n.minItems, n.maxItems, err = c.counts(s, "minItems", "maxItems", at); err != nil {
		return err
	}
	if n.items == nil {
		// No item after the prefix.
		if n.maxItems < 0 || n.maxItems > len(n.prefix) {
			n.maxItems = len(n.prefix)
		}
		if n.minItems > n.maxItems && n.types&tArray != 0 {
			return c.errorf(at, "minItems %d: at most %d items are allowed", n.minItems, n.maxItems)
		}
	}
	switch u := s["uniqueItems"]; u {
	case nil, false:
	case true:
		if n.types&tArray != 0 {
			n.unique = true
			c.uniques = append(c.uniques, union{n, at + "/uniqueItems"})
		}
	default:
		return c.errorf(at+"/uniqueItems", "a boolean, not %s", jsonKind(u))
	}
	return nil
}

// itemAt is the schema of an array of n's item i (nil: there is none).
func itemAt(n *node, i int) *node {
	if i < len(n.prefix) {
		return n.prefix[i]
	}
	return n.items
}

// maxUnique bounds the values of an enum whose items are unique (a bit each in a frame).
const maxUnique = 64

// unique checks an array of unique items, once references are compiled: its items are
// one enum of at most maxUnique values, each spelled one way only (strings, integers,
// booleans, null), so that two items are equal exactly when their text is; and it can
// hold no more items than the enum has values.
func (c *compiler) unique(n *node, at string) error {
	it := n.items
	if len(n.prefix) > 0 || it == nil || it.enum == nil || it.anyOf != nil || len(it.enum) > maxUnique {
		return c.errorf(at, "uniqueItems is enforced only on arrays whose items are an enum of at most %d values", maxUnique)
	}
	for _, e := range it.enum {
		number := e[0] == '-' || e[0] >= '0' && e[0] <= '9'
		if e[0] == '{' || e[0] == '[' || number && (strings.ContainsAny(e, ".eE") || e == "-0") {
			return c.errorf(at, "uniqueItems on an enum value %s: only on strings, integers, booleans and null", e)
		}
	}
	if n.maxItems < 0 || n.maxItems > len(it.enum) {
		n.maxItems = len(it.enum)
	}
	if n.minItems > n.maxItems {
		return c.errorf(at, "minItems %d: only %d distinct items", n.minItems, n.maxItems)
	}
	return nil
}

// values compiles enum and const into the encodings the value may have, those of the
// listed values whose type the schema allows.
func (c *compiler) values(n *node, s map[string]any, at string) error {
	var list []any
	k := "enum"
	if v, ok := s["const"]; ok {
		list, k = []any{v}, "const"
	} else if v, ok := s["enum"]; ok {
		l, ok := v.([]any)
		if !ok || len(l) == 0 {
			return c.errorf(at+"/enum", "a non-empty array of values")
		}
		list = l
	} else {
		return nil
	}
	if n.bounded || n.real != nil {
		return c.errorf(at+"/"+k, "beside minimum, maximum or multipleOf is not supported")
	}
	for _, kw := range []string{"properties", "additionalProperties", "minProperties", "maxProperties",
		"items", "prefixItems", "minItems", "maxItems", "uniqueItems"} {
		if _, ok := s[kw]; ok {
			return c.errorf(at+"/"+k, "beside %s is not supported", kw)
		}
	}
	n.enum = []string{}
	for _, v := range list {
		if valueType(v)&n.types == 0 {
			continue
		}
		if str, ok := v.(string); ok && n.str != nil && !n.str.matches(str) {
			continue
		}
		var b bytes.Buffer
		e := json.NewEncoder(&b)
		e.SetEscapeHTML(false)
		if err := e.Encode(v); err != nil {
			return c.errorf(at+"/"+k, "%v", err)
		}
		n.enum = append(n.enum, strings.TrimSuffix(b.String(), "\n"))
	}
	n.enum = sortedSet(n.enum)
	if len(n.enum) == 0 {
		return c.errorf(at+"/"+k, "no listed value has the schema's type")
	}
	return nil
}

// ref resolves a local reference: "#", "#/$defs/NAME" or "#/definitions/NAME". A
// recursive schema compiles to a cycle of nodes.
func (c *compiler) ref(v any, at string) (*node, error) {
	ref, _ := v.(string)
	if n, ok := c.refs[ref]; ok {
		return n, nil
	}
	target, err := c.target(v, at)
	if err != nil {
		return nil, err
	}
	// Registered before it is compiled, so that a reference back to it (recursion)
	// finds it; filled in below.
	n := &node{}
	c.refs[ref] = n
	got, err := c.compile(target, ref)
	if err != nil {
		return nil, err
	}
	*n = *got
	return n, nil
}

// target is the schema a local reference refers to.
func (c *compiler) target(v any, at string) (any, error) {
	ref, _ := v.(string)
	var target any
	switch {
	case ref == "#" && c.root != nil:
		target = c.root
	case strings.HasPrefix(ref, "#/$defs/"), strings.HasPrefix(ref, "#/definitions/"):
		section, name, _ := strings.Cut(strings.TrimPrefix(ref, "#/"), "/")
		defs, _ := c.root[section].(map[string]any)
		target = defs[strings.NewReplacer("~1", "/", "~0", "~").Replace(name)]
	default:
		return nil, c.errorf(at+"/$ref", "%v: only #, #/$defs/NAME and #/definitions/NAME are supported", v)
	}
	if target == nil {
		return nil, c.errorf(at+"/$ref", "%v: no such definition", v)
	}
	return target, nil
}

// maxBranches bounds a union's branches once flattened: each begins with one of eight
// kinds of byte ({ [ " - digit t f n), so more than eight times maxAlts are too wide.
const maxBranches = 8 * maxAlts

// width is the most values of n that one first byte begins (the matcher's
// alternatives, of which it keeps at most maxAlts open).
func width(n *node) int {
	most := 0
	for _, b := range []byte(`{["-1tfn`) {
		most = max(most, begins(n, b))
	}
	return most
}

// begins counts the values of n that begin with b.
func begins(n *node, b byte) int {
	switch {
	case n.anyOf != nil:
		k := 0
		for _, a := range n.anyOf {
			k += begins(a, b)
		}
		return k
	case n.enum != nil:
		if slices.ContainsFunc(n.enum, func(e string) bool { return e[0] == b || b == '1' && e[0] >= '0' && e[0] <= '9' }) {
			return 1
		}
		return 0
	}
	if len(begin(nil, &frame{kind: kEnd}, n, b)) > 0 {
		return 1
	}
	return 0
}

// sortedSet sorts list and drops its repeats: enum values are looked up by binary
// search (a linear scan of a 64 KiB enum's 6,800 values at every byte cost 10-30 ms a
// token's mask, and dropping repeats by scanning cost 67 ms a compile).
func sortedSet(list []string) []string {
	slices.Sort(list)
	return slices.Compact(list)
}

// escapeKey is a property name as JSON spells it between the quotes.
func escapeKey(name string) string {
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	_ = e.Encode(name) // a string always encodes
	s := strings.TrimSuffix(b.String(), "\n")
	return s[1 : len(s)-1]
}

func valueType(v any) typeSet {
	switch v := v.(type) {
	case map[string]any:
		return tObject
	case []any:
		return tArray
	case string:
		return tString
	case json.Number:
		if _, err := v.Int64(); err == nil {
			return tInteger | tNumber
		}
		return tNumber
	case bool:
		return tBoolean
	case nil:
		return tNull
	}
	return 0
}

func jsonKind(v any) string {
	switch valueType(v) {
	case tObject:
		return "an object"
	case tArray:
		return "an array"
	case tString:
		return "a string"
	case tBoolean:
		return "a boolean"
	case tNull:
		return "null"
	}
	return "a number"
}

// quoteShort quotes a pattern for an error: its first 64 characters, and "…" after
// them where it is longer (a pattern may be 64 KiB, and the error goes to the client).
func quoteShort(src string) string {
	if utf8.RuneCountInString(src) <= 64 {
		return strconv.Quote(src)
	}
	n := 0
	for i := range src {
		if n == 64 {
			return strconv.Quote(src[:i]) + "…"
		}
		n++
	}
	return strconv.Quote(src)
}
