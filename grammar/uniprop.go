package grammar

import (
	"slices"
	"strings"
	"sync"
	"unicode"
)

// Unicode property classes of ECMA-262 patterns (\p{...} and \P{...} with the u flag,
// §22.2.2.9): a General_Category value (\p{L}, \p{Letter}, \p{gc=Lu},
// \p{General_Category=Decimal_Number}), a Script by its long name (\p{Script=Greek},
// \p{sc=Latin}) and the binary properties Go's unicode package holds. They are Go's
// tables (unicode.Version, 15.0 in Go 1.26), where ECMA-262 engines have their own (Node
// 20's ICU: Unicode 17): so that a pattern never takes a character the client's reading
// refuses, a class holds only characters Go's tables assign (\P{L} and [^\p{L}] too),
// and a character assigned since is in none. Script_Extensions, the short names of
// scripts and binary properties (Grek, AHex) and the properties of strings are refused
// with an error naming them.

// assigned is every character Go's tables give a category other than Cn; made once.
var assigned = sync.OnceValue(func() []span { return normalize(tableSpans(unicode.Cn), true) })

// gcNames are ECMA-262's long names (and aliases) of the General_Category values, to
// Go's short ones (Table 68 of ECMA-262, from Unicode's PropertyValueAliases.txt).
var gcNames = map[string]string{
	"Letter": "L", "Cased_Letter": "LC", "Uppercase_Letter": "Lu", "Lowercase_Letter": "Ll",
	"Titlecase_Letter": "Lt", "Modifier_Letter": "Lm", "Other_Letter": "Lo",
	"Mark": "M", "Combining_Mark": "M", "Nonspacing_Mark": "Mn", "Spacing_Mark": "Mc", "Enclosing_Mark": "Me",
	"Number": "N", "Decimal_Number": "Nd", "digit": "Nd", "Letter_Number": "Nl", "Other_Number": "No",
	"Punctuation": "P", "punct": "P", "Connector_Punctuation": "Pc", "Dash_Punctuation": "Pd",
	"Open_Punctuation": "Ps", "Close_Punctuation": "Pe", "Initial_Punctuation": "Pi",
	"Final_Punctuation": "Pf", "Other_Punctuation": "Po",
	"Symbol": "S", "Math_Symbol": "Sm", "Currency_Symbol": "Sc", "Modifier_Symbol": "Sk", "Other_Symbol": "So",
	"Separator": "Z", "Space_Separator": "Zs", "Line_Separator": "Zl", "Paragraph_Separator": "Zp",
	"Other": "C", "Control": "Cc", "cntrl": "Cc", "Format": "Cf", "Surrogate": "Cs", "Private_Use": "Co",
	"Unassigned": "Cn",
}

// binaryProps are the binary properties of ECMA-262's Table 67 that Go's
// unicode.Properties holds, by their long names.
var binaryProps = []string{
	"ASCII_Hex_Digit", "Bidi_Control", "Dash", "Deprecated", "Diacritic", "Extender", "Hex_Digit",
	"IDS_Binary_Operator", "IDS_Trinary_Operator", "Ideographic", "Join_Control",
	"Logical_Order_Exception", "Noncharacter_Code_Point", "Pattern_Syntax", "Pattern_White_Space",
	"Quotation_Mark", "Radical", "Regional_Indicator", "Sentence_Terminal", "Soft_Dotted",
	"Terminal_Punctuation", "Unified_Ideograph", "Variation_Selector", "White_Space",
}

// propertyClasses are the classes propertyClass made, by negation and body: a
// pattern may repeat \P{Lu} thousands of times (9,000 took 5 s). There are a few
// hundred bodies that make one. Its slices are shared, never changed.
var propertyClasses sync.Map // propKey → []span

type propKey struct {
	neg  bool
	body string
}

// propertyClass returns the characters of the property body (what stands between
// \p{ and }), or of what Go's tables assign but the property where neg (\P{...}), or
// what is not supported of it.
func propertyClass(neg bool, body string) ([]span, string) {
	key := propKey{neg, body}
	if c, ok := propertyClasses.Load(key); ok {
		return c.([]span), ""
	}
	c, why := property(body)
	if why != "" {
		return nil, why
	}
	if neg {
		c = intersect(normalize(c, true), assigned())
	}
	c = slices.Clip(c)
	propertyClasses.Store(key, c)
	return c, ""
}

// property is propertyClass of \p{body}, made anew.
func property(body string) ([]span, string) {
	name, value, hasValue := strings.Cut(body, "=")
	var c []span
	switch {
	case hasValue && (name == "General_Category" || name == "gc"):
		c = generalCategory(value)
	case hasValue && (name == "Script" || name == "sc"):
		if t := unicode.Scripts[value]; t != nil {
			c = tableSpans(t)
		} else {
			return nil, "a Script given by a name other than its long one in Go's tables (\\p{Script=Greek}, not Grek)"
		}
	case hasValue && (name == "Script_Extensions" || name == "scx"):
		return nil, "Script_Extensions"
	case hasValue:
		return nil, "a property other than General_Category and Script with a value"
	case body == "Any":
		c = anyChar
	case body == "ASCII":
		c = []span{{0, 0x7F}}
	case body == "Assigned":
		c = assigned()
	case generalCategory(body) != nil:
		c = generalCategory(body)
	default:
		for _, p := range binaryProps {
			if body == p {
				c = tableSpans(unicode.Properties[p])
			}
		}
	}
	switch {
	case c == nil:
		return nil, "an unknown property, or a binary one not in Go's tables (Alphabetic, Emoji, ID_Start, short names)"
	case body == "Any":
		return c, ""
	}
	return intersect(normalize(c, false), assigned()), ""
}

// generalCategory returns the characters of a General_Category value (short or long
// name), or nil for none. Cn (Unassigned) is refused by propertyClass's caller: it is
// what Go's tables and the client's disagree on.
func generalCategory(v string) []span {
	if long, ok := gcNames[v]; ok {
		v = long
	}
	if v == "Cn" {
		return nil
	}
	t := unicode.Categories[v]
	if t == nil {
		return nil
	}
	return tableSpans(t)
}
