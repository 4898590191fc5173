// gen.js writes verdicts.jsonl: for JSON Schema patterns and strings, whether
// ECMA-262's RegExp (this Node.js's) matches, as ajv reads a pattern:
// new RegExp(pattern, "u").test(string), with minLength and maxLength counted in code
// points. TestPatternAgreesWithECMA (grammar/ecma_oracle_test.go) holds specd to it.
// Run from this folder: node gen.js > verdicts.jsonl. No packages; the output is
// the same on every run (the random cases come from a fixed seed).
"use strict";

// A small PRNG (mulberry32) so that the file does not change from run to run.
function rng(seed) {
  return function () {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
let rand = rng(20261208);
const int = (n) => Math.floor(rand() * n);
const pick = (a) => a[int(a.length)];

// Characters strings are made of: ASCII the patterns name, characters JSON escapes
// (" \ and control characters), white space ECMA-262's \s has and lacks, past ASCII,
// and past U+FFFF (a surrogate pair in JavaScript, one code point to JSON Schema).
const alphabet = [
  "a", "b", "c", "A", "Z", "z", "0", "5", "9", "_", "-", ".", " ", "/", "{", "}", ",",
  "\"", "\\", "\n", "\r", "\t", "\b", "\f", "\v", "\u0001", "\u001f", "\u007f",
  "\u00a0", "\u1680", "\u2028", "\u2029", "\u3000", "\ufeff", "\u0085", "\u200b",
  "é", "É", "ß", "世", "界", "ı", "K", "\u212a", "٣", "\u{1F600}", "\u{1F642}", "\u{10FFFF}", "\u{10000}",
];

function randomString(max) {
  let s = "";
  for (let n = int(max + 1); n > 0; n--) s += pick(alphabet);
  return s;
}

// Random patterns: a node has src (its text) and sample() (a string it matches, for
// cases that match as well as ones that do not).
function lit(src, chars) {
  return { src, sample: () => pick(chars) };
}
const atoms = [
  () => lit("a", ["a"]), () => lit("b", ["b"]), () => lit("é", ["é"]), () => lit("世", ["世"]),
  () => lit("\u{1F600}", ["\u{1F600}"]), () => lit(" ", [" "]), () => lit("\"", ["\""]),
  () => lit("\\\\", ["\\"]), () => lit("\\n", ["\n"]), () => lit("\\t", ["\t"]),
  () => lit("\\.", ["."]), () => lit("\\/", ["/"]), () => lit("\\u00e9", ["é"]),
  () => lit("\\u{1F642}", ["\u{1F642}"]), () => lit("\\uD83D\\uDE00", ["\u{1F600}"]),
  () => lit("\\x41", ["A"]), () => lit("\\0", ["\0"]), () => lit("\\cJ", ["\n"]),
  () => lit("\\d", ["0", "7"]), () => lit("\\D", ["a", "é", "\u{1F600}"]),
  () => lit("\\w", ["a", "Z", "_", "3"]), () => lit("\\W", ["é", " ", "-", "\u{1F600}"]),
  () => lit("\\s", [" ", "\t", "\u00a0", "\u2028", "\ufeff"]), () => lit("\\S", ["a", "\u{1F600}", "\u200b"]),
  () => lit(".", ["a", "é", "\u{1F600}", " "]), () => lit("[^]", ["\n", "a", "\u{1F600}"]),
  () => lit("\\{", ["{"]), () => lit("\\}", ["}"]), () => lit("\\|", ["|"]),
  randomClass,
];

function randomClass() {
  const members = [
    ["a-c", ["a", "b", "c"]], ["x", ["x"]], ["0-9", ["3"]], ["\\d", ["8"]], ["\\w", ["q", "_"]],
    ["\\s", [" ", "\u3000"]], ["é-ü", ["é", "ñ"]], ["\\u{1F600}-\\u{1F64F}", ["\u{1F642}"]],
    ["\u{1F600}", ["\u{1F600}"]], ["\"", ["\""]], ["\\\\", ["\\"]], ["\\n", ["\n"]], ["\\-", ["-"]],
    ["\\]", ["]"]], ["\\b", ["\b"]], [".", ["."]], ["\\W", ["!", "é"]], ["\\D", ["a", "\u{1F600}"]],
    ["\\S", ["a"]], ["^", ["^"]], ["$", ["$"]], ["(", ["("]], ["*", ["*"]], ["\\x20-\\x2f", ["!", "/"]],
  ];
  const n = 1 + int(3);
  const neg = rand() < 0.3;
  let src = "", chars = [];
  for (let i = 0; i < n; i++) {
    const m = pick(members);
    if (i === 0 && m[0] === "^") continue;
    src += m[0];
    chars = chars.concat(m[1]);
  }
  if (neg) return { src: "[^" + src + "]", sample: () => pick(["a", "z", "é", "\u{1F600}", " ", "\n", "\"", "-"]) };
  return { src: "[" + src + "]", sample: () => (chars.length ? pick(chars) : "") };
}

function quantify(node) {
  const q = pick([
    ["*", 0, 3], ["+", 1, 3], ["?", 0, 1], ["{2}", 2, 2], ["{0,2}", 0, 2], ["{1,3}", 1, 3], ["{2,}", 2, 4],
  ]);
  const lazy = rand() < 0.2 ? "?" : "";
  return {
    src: node.src + q[0] + lazy,
    sample: () => {
      let s = "";
      for (let k = q[1] + int(q[2] - q[1] + 1); k > 0; k--) s += node.sample();
      return s;
    },
  };
}

function seq(depth) {
  const items = [];
  for (let n = 1 + int(4); n > 0; n--) {
    let node = depth < 2 && rand() < 0.25 ? group(depth + 1) : pick(atoms)();
    if (rand() < 0.35) node = quantify(node);
    items.push(node);
  }
  return { src: items.map((i) => i.src).join(""), sample: () => items.map((i) => i.sample()).join("") };
}

function alts(depth) {
  const as = [seq(depth)];
  while (rand() < 0.3) as.push(seq(depth));
  return { src: as.map((a) => a.src).join("|"), sample: () => pick(as).sample(), alts: as };
}

function group(depth) {
  const a = alts(depth);
  const open = pick(["(", "(?:", "(?<g" + depth + int(1000) + ">"]);
  return { src: open + a.src + ")", sample: a.sample };
}

function randomPattern() {
  const as = [];
  for (let n = 1 + (rand() < 0.3 ? 1 : 0); n > 0; n--) {
    const s = seq(0);
    const start = rand() < 0.5, end = rand() < 0.5;
    as.push({ src: (start ? "^" : "") + s.src + (end ? "$" : ""), sample: s.sample });
  }
  return { src: as.map((a) => a.src).join("|"), sample: () => pick(as).sample() };
}

const props = [
  "a", "Z", "é", "Σ", "ж", "世", "\u0661", "_", "-", "€", "+", "\u{1F600}", "\u0301", "\u00a0", "\u2028",
  "\u01c5", "\u02b0", "\u216b", "½", "«", "»", "(", ")", "¢", "^", "©", "\u200d", "\ue000", "\u{1E5D0}",
  "\u3000", "5", "f", "\u0085", "\u2010", "\u{20000}",
];

// Hand-written cases: a pattern and strings, for each feature the parser takes or
// refuses (ECMA-262 2024 §22.2.1 and Annex B).
const hand = [
  // literals, the empty pattern, not anchored
  ["", ["", "a", "\u{1F600}", "\n"]],
  ["abc", ["abc", "xabcx", "ab", "ABC", "a\nbc"]],
  ["^abc$", ["abc", "abcd", " abc", "abc\n"]],
  ["^a|b$", ["axx", "xxb", "xbx", "b", "a"]],
  ["^$", ["", " ", "\n"]],
  ["a|", ["", "x", "a"]],
  ["|", ["", "x"]],
  ["^(?:)$", ["", "a"]],
  ["^()$", ["", "a"]],
  // anchors elsewhere: ECMA-262 reads them; specd refuses
  ["a^b", ["a^b", "ab", ""]],
  ["a$b", ["a$b", "ab"]],
  ["(^a|b)c", ["ac", "xbc", "xac"]],
  ["(a$)", ["a", "ab"]],
  ["^^a", ["a"]],
  ["a$$", ["a"]],
  ["(?:^a)", ["a", "ba"]],
  // dot
  ["^.$", ["a", "\n", "\r", "\u2028", "\u2029", "\u{1F600}", "\u0085", "é", "\t", "\v", ""]],
  ["^..$", ["\u{1F600}", "\u{1F600}a", "ab"]],
  ["^.+$", ["\u{1F600}\u{1F642}", "a\nb", "\u{10FFFF}"]],
  // classes
  ["^[abc]$", ["a", "d", "ab", ""]],
  ["^[^abc]$", ["a", "d", "\u{1F600}", "\n"]],
  ["^[a-z]+$", ["hello", "Hello", "héllo"]],
  ["^[A-z]$", ["[", "\\", "^", "_", "`", "a", "@"]],
  ["^[]$", ["", "a", "[]"]],
  ["^[^]$", ["a", "\n", "\u{1F600}", ""]],
  ["[]|a", ["a", "b"]],
  ["^[a-]$", ["a", "-", "b"]],
  ["^[-a]$", ["a", "-"]],
  ["^[a-c-e]$", ["b", "-", "d", "e"]],
  ["^[\\w-]+$", ["a-b", "a b"]],
  ["^[\\w.-]+$", ["a.b-c", "a/b"]],
  ["^[\\d-z]$", ["5", "-", "z", "y"]],
  ["^[\\]]$", ["]", "\\"]],
  ["^[\\[]$", ["["]],
  ["^[[]$", ["["]],
  ["^[a[]$", ["[", "a"]],
  ["^[\\^]$", ["^"]],
  ["^[a^]$", ["^", "a"]],
  ["^[\\b]$", ["\b", "b"]],
  ["^[\\B]$", ["B"]],
  ["^[.]$", [".", "a"]],
  ["^[é-ü]$", ["é", "ñ", "e", "ý"]],
  ["^[\u{1F600}-\u{1F64F}]$", ["\u{1F642}", "\u{1F650}", "\u{1F600}\u{1F600}"]],
  ["^[\\u{1F600}-\\u{1F64F}]+$", ["\u{1F642}\u{1F600}", "a"]],
  ["^[\\uD83D\\uDE00-\\uD83D\\uDE4F]$", ["\u{1F642}", "\u{1F650}"]],
  ["^[^\\u{1F600}]$", ["\u{1F600}", "\u{1F601}", "a"]],
  ["^[\"\\\\]$", ["\"", "\\", "'"]],
  ["^[^\"\\\\]*$", ["abc", "a\"b", "a\\b", ""]],
  ["^[\\s\\S]$", ["\n", "a", "\u{1F600}"]],
  ["^[\\d\\s]+$", ["1 2", "1a"]],
  ["^[^\\d\\s]+$", ["ab", "a1", "a\u00a0"]],
  ["^[^\\W]+$", ["abc", "é"]],
  ["^[z-a]$", ["a"]],
  ["^[\\x00-\\x1f]$", ["\n", "\t", "\u0001", " "]],
  ["^[^\\x00-\\x7f]$", ["é", "a", "\u{1F600}"]],
  // escapes
  ["^\\d+$", ["0123", "٣", "12a"]],
  ["^\\D+$", ["abc", "٣", "a1"]],
  ["^\\w+$", ["abc_9", "é", "K", "\u212a"]],
  ["^\\W+$", ["é\u{1F600}", "a"]],
  ["^\\s$", [" ", "\t", "\n", "\v", "\f", "\r", "\u00a0", "\u1680", "\u2000", "\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\ufeff", "\u0085", "\u200b", "\u180e", "\u001c"]],
  ["^\\S$", [" ", "\u00a0", "\u0085", "\u200b", "a", "\u{1F600}"]],
  ["\\bword\\b", ["a word here", "swordfish", "word"]],
  ["\\Bx", ["ax", "x"]],
  ["^\\u00e9$", ["é", "e"]],
  ["^\\u00E9\\x41$", ["éA"]],
  ["^\\u{1F600}$", ["\u{1F600}"]],
  ["^\\u{0000000041}$", ["A"]],
  ["^\\u{10FFFF}$", ["\u{10FFFF}"]],
  ["^\\u{110000}$", ["a"]],
  ["^\\u{}$", ["a"]],
  ["^\\uD83D\\uDE00$", ["\u{1F600}", "x"]],
  ["^\\ud83d\\ude00+$", ["\u{1F600}\u{1F600}", "\u{1F600}"]],
  ["^\\uD83D$", ["\u{1F600}", "a"]],
  ["^\\uDE00\\uD83D$", ["a"]],
  ["^\\x41$", ["A"]],
  ["^\\x4$", ["x4"]],
  ["^\\u12$", ["u12"]],
  ["^\\n\\t\\r\\f\\v\\0$", ["\n\t\r\f\v\0"]],
  ["^\\0$", ["\0", "0"]],
  ["^\\00$", ["\0"]],
  ["^\\cJ$", ["\n", "J"]],
  ["^\\ca$", ["\u0001"]],
  ["^\\c$", ["\\c", "c"]],
  ["^[\\cJ]$", ["\n"]],
  ["^\\/$", ["/"]],
  ["^\\.\\*\\+\\?\\(\\)\\[\\]\\{\\}\\|\\^\\$\\\\$", [".*+?()[]{}|^$\\"]],
  ["^\\-$", ["-"]],
  ["^\\\"$", ["\""]],
  ["^\\#\\@\\ \\,$", ["#@ ,"]],
  ["^\\e$", ["e"]],
  ["^\\a$", ["a", "\u0007"]],
  ["^\\_$", ["_"]],
  ["^\\é$", ["é"]],
  ["\\p{L}", ["a", "1"]],
  ["^\\p{Lu}+$", ["ABC", "abc"]],
  ["\\P{L}", ["1", "a"]],
  // Unicode property classes: props are characters of many categories and scripts,
  // U+1E5D0 one that Unicode 16 assigned (after Go 1.26's tables, 15.0).
  ...[
    "^\\p{L}$", "^\\p{L}+$", "^\\p{Letter}$", "^\\p{Lu}$", "^\\p{Ll}$", "^\\p{Lt}$", "^\\p{Lm}$", "^\\p{Lo}$",
    "^\\p{LC}$", "^\\p{Cased_Letter}$", "^\\p{M}$", "^\\p{Mn}$", "^\\p{N}$", "^\\p{Nd}$", "^\\p{gc=Nd}$",
    "^\\p{General_Category=Decimal_Number}$", "^\\p{digit}$", "^\\p{Nl}$", "^\\p{No}$", "^\\p{P}$", "^\\p{punct}$",
    "^\\p{Pc}$", "^\\p{Pd}$", "^\\p{Ps}$", "^\\p{Pe}$", "^\\p{Pi}$", "^\\p{Pf}$", "^\\p{S}$", "^\\p{Sc}$",
    "^\\p{Sk}$", "^\\p{So}$", "^\\p{Z}$", "^\\p{Zs}$", "^\\p{C}$", "^\\p{Cf}$", "^\\p{Co}$", "^\\p{Cc}$",
    "^\\P{L}$", "^\\P{Lu}+$", "^[\\p{L}\\p{N} '-]+$", "^[^\\p{L}]$", "^[^\\p{L}\\p{N}]+$", "^[\\P{L}]$",
    "^\\p{Script=Greek}+$", "^\\p{sc=Han}$", "^\\p{Script=Latin}$", "^\\p{sc=Cyrillic}+$", "^\\P{sc=Latin}$",
    "^\\p{White_Space}$", "^\\p{ASCII}+$", "^\\p{Any}$", "^\\P{Any}$", "^\\p{Assigned}$", "^\\P{Assigned}$",
    "^\\p{Hex_Digit}+$", "^\\p{ASCII_Hex_Digit}$", "^\\p{Ideographic}$", "^\\p{Join_Control}$", "^\\p{Dash}$",
    "^\\p{sc=Grek}$", "^\\p{scx=Grek}$", "^\\p{Script_Extensions=Greek}$", "^\\p{Alphabetic}$", "^\\p{Emoji}$",
    "^\\p{Cn}$", "^\\p{Unassigned}$", "^\\p{Foo}$", "^\\p{Other_Alphabetic}$", "^\\p{AHex}$", "\\p", "\\p{L", "[\\p{L}-z]",
    "^\\p{Lu}\\p{Ll}+$",
  ].map((p) => [p, props.concat(["Ab", "ΣΑ", "жж", "a1", "é'-x"])]),
  ["\\k<n>", ["k<n>"]],
  // groups
  ["^(ab)+$", ["abab", "aba"]],
  ["^(?:ab|cd)*$", ["", "abcd", "abc"]],
  ["^(?<year>\\d{4})-(?<m>\\d\\d)$", ["2024-12", "24-12"]],
  ["^(?<a-b>x)$", ["x"]],
  ["^(?P<n>x)$", ["x"]],
  ["^(?<n>a)(?<n>b)$", ["ab"]],
  ["^((a)|b)+$", ["aab", "c"]],
  ["^(a(b(c)))$", ["abc"]],
  ["(?i)abc", ["ABC"]],
  ["(?i:a)", ["A"]],
  ["(?#c)a", ["a"]],
  ["(?=a)a", ["a", "b"]],
  ["(?!a).", ["a", "b"]],
  ["(?<=a)b", ["ab", "b"]],
  ["(?<!a)b", ["ab", "b"]],
  ["(a)\\1", ["aa", "ab"]],
  ["(?<n>a)\\k<n>", ["aa"]],
  ["\\1(a)", ["a"]],
  ["(a", ["a"]],
  ["a)", ["a)"]],
  ["(?>a)", ["a"]],
  // quantifiers
  ["^a*$", ["", "aaa", "ab"]],
  ["^a+$", ["", "a", "aa"]],
  ["^a?$", ["", "a", "aa"]],
  ["^a{3}$", ["aa", "aaa", "aaaa"]],
  ["^a{2,}$", ["a", "aa", "aaaaa"]],
  ["^a{1,3}$", ["", "a", "aaa", "aaaa"]],
  ["^a{0}$", ["", "a"]],
  ["^a{00002}$", ["aa", "a"]],
  ["^a{0000000002}$", ["aa", "a{0000000002}"]],
  ["^a{9999999999}$", ["a{9999999999}", "a"]],
  ["^a{1,99999999999}$", ["a", "aaa", "a{1,99999999999}", ""]],
  ["^(ab){2,4294967296}$", ["abab", "ab", "ababababab"]],
  ["^a{16777217,}$", ["a"]],
  ["^a{0,0}b$", ["b", "ab"]],
  ["^a*?b$", ["aab", "b"]],
  ["^a+?$", ["aa"]],
  ["^a??$", ["", "a"]],
  ["^a{2}?$", ["aa"]],
  ["^a{1,2}?$", ["a", "aa", "aaa"]],
  ["^a{2,}?$", ["aa", "a"]],
  ["^a{,2}$", ["a{,2}", "aa", ""]],
  ["^a{$", ["a{"]],
  ["^a{1$", ["a{1"]],
  ["^a{1,2$", ["a{1,2"]],
  ["^a{x}$", ["a{x}"]],
  ["^a{ 2}$", ["a{ 2}"]],
  ["^{$", ["{"]],
  ["^}$", ["}"]],
  ["^]$", ["]"]],
  ["^a{3,2}$", ["aa"]],
  ["^a**$", ["a"]],
  ["^a{2}{3}$", ["aaaaaa"]],
  ["^a++$", ["a"]],
  ["*a", ["a"]],
  ["^*a", ["a"]],
  ["^(a?)*$", ["", "aa", "b"]],
  ["^(a*)+$", ["", "aa"]],
  ["^()*$", ["", "a"]],
  ["^(a|)+b$", ["b", "aab", "c"]],
  ["^(?:a?b?)*$", ["", "abba", "c"]],
  ["^(a|b)*a(a|b){3}$", ["aaaa", "babbb", "abab"]],
  ["^\\d{1,3}(,\\d{3})*$", ["1,234,567", "1234", "12,34"]],
  ["^.{3,5}$", ["ab", "abc", "\u{1F600}\u{1F600}\u{1F600}", "abcdef"]],
  ["^[\\u{1F600}-\\u{1F64F}]{2}$", ["\u{1F600}\u{1F601}", "\u{1F600}"]],
  ["^(\u{1F600}|a){2,3}$", ["\u{1F600}a", "\u{1F600}\u{1F600}\u{1F600}\u{1F600}"]],
  // alternation and case
  ["^(cat|dog|bird)$", ["cat", "dog", "Dog", "bird", "catdog"]],
  ["^[Kk]$", ["K", "k", "\u212a"]],
  ["ß", ["ß", "SS", "ss"]],
  ["^ı$", ["ı", "i", "I"]],
  // JSON-escape-relevant
  ["\"", ["say \"hi\"", "say hi"]],
  ["^\"[^\"]*\"$", ["\"quoted\"", "\"a\"b\""]],
  ["^a\\\\[bn]+$", ["a\\b", "a\\n", "a\n"]],
  ["^[^\\n]*$", ["abc", "a\nb", "a\rb"]],
  ["\\n", ["a\nb", "a\\nb"]],
  ["^\\t\\x08\\x0c$", ["\t\b\f"]],
  ["^\\x01$", ["\u0001"]],
  ["\\x01|a", ["\u0001", "a"]],
  ["^[\\x00-\\x08]*$", ["", "\b", "\u0001\b"]],
  ["^\\u2028$", ["\u2028"]],
  ["<|>|&", ["<", ">", "&", "a"]],
  // patterns clients send
  ["^[A-Z]{3}-\\d{4}$", ["ABC-1234", "ABC1234", "abc-1234"]],
  ["^\\+?[0-9 ]{7,15}$", ["+1 555 0100", "555", "+12345678901234567"]],
  ["^[a-z0-9._%+-]+@[a-z0-9.-]+\\.[a-z]{2,4}$", ["bob@example.com", "bob@example", "Bob@example.com"]],
  ["^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", ["123e4567-e89b-12d3-a456-426614174000", "123e4567-e89b-12d3-a456-42661417400"]],
  ["^\\d{4}-\\d{2}-\\d{2}$", ["2024-01-31", "2024-1-31"]],
  ["^(\\([0-9]{3}\\))?[0-9]{3}-[0-9]{4}$", ["(888)555-1212", "555-1212", "(888)555-1212 ext. 532"]],
  ["^https?://[^\\s/$.?#].[^\\s]*$", ["https://example.com/a?b", "http://", "ftp://x.y"]],
  ["^#?([a-f0-9]{6}|[a-f0-9]{3})$", ["#a3c113", "fff", "#ggg"]],
  ["^[\\p{L} ]+$", ["hello world"]],
  ["colou?r", ["color", "colour", "colr"]],
  ["^(?!\\s*$).+", ["a", "  "]],
  // bounds
  ["(a|b)*a(a|b){20}", ["a" + "b".repeat(20)]],
  ["^.{8000}$", ["a".repeat(8000)]],
  [".{8000}", ["a"]],
  ["^a{8200}$", ["a"]],
];

// Cases with minLength and maxLength beside the pattern, counted in code points as
// JSON Schema counts them (ajv's ucs2length).
const lengths = [
  ["^.*$", 2, 2, ["\u{1F600}", "\u{1F600}\u{1F600}", "ab", "a\u{1F600}", "\u{1F600}\u{1F600}\u{1F600}"]],
  ["^[\\u{1F600}-\\u{1F64F}]+$", 1, 3, ["\u{1F600}", "\u{1F600}\u{1F601}\u{1F602}", "\u{1F600}\u{1F601}\u{1F602}\u{1F603}", ""]],
  ["x", 3, null, ["x", "xé\u{1F600}", "x\u{1F600}"]],
  ["x", null, 2, ["x\u{1F600}", "xx\u{1F600}", "\u{1F600}"]],
  ["^(ab|c+)$", 3, null, ["ab", "ccc", "cc"]],
  ["\"", 2, 3, ["\"\"", "\"", "a\"\\", "\"\\\\\\"]],
  ["^\\d{2,}$", null, 3, ["12", "1234"]],
  ["é", 1, 1, ["é", "e\u0301"]],
  ["^.{2}$", 2, null, ["\u{1F600}\u{1F600}", "\u{1F600}"]],
];

function verdicts(pattern, strings, min, max) {
  const row = { pattern };
  if (min != null) row.minLength = min;
  if (max != null) row.maxLength = max;
  let re = null;
  try {
    re = new RegExp(pattern, "u");
  } catch (e) {
    row.error = e.message;
  }
  row.strings = strings;
  if (re) {
    row.match = strings.map((s) => {
      const n = [...s].length;
      return re.test(s) && (min == null || n >= min) && (max == null || n <= max);
    });
  } else {
    // What Annex B (no u flag) reads, for patterns ECMA-262 refuses with u.
    try {
      const loose = new RegExp(pattern);
      row.annexB = strings.map((s) => loose.test(s));
    } catch (e) {
      row.annexBError = e.message;
    }
  }
  return row;
}

const out = [];
const seen = new Set();
for (const [p, strs] of hand) {
  seen.add(p);
  const more = [];
  for (let i = 0; i < 4; i++) more.push(randomString(6));
  out.push(verdicts(p, strs.concat(more)));
}
for (const [p, min, max, strs] of lengths) out.push(verdicts(p, strs, min, max));
// The random patterns have a generator of their own, so that adding a hand-written
// case does not change them.
rand = rng(20261209);
const randomPatterns = Number(process.argv[2] || 900);
for (let i = 0; i < randomPatterns; i++) {
  const pt = randomPattern();
  if (seen.has(pt.src)) continue;
  seen.add(pt.src);
  const strs = new Set();
  for (let k = 0; k < 4; k++) strs.add(pt.sample());
  for (let k = 0; k < 2; k++) strs.add(randomString(3) + pt.sample() + randomString(3));
  for (let k = 0; k < 3; k++) strs.add(randomString(8));
  out.push(verdicts(pt.src, [...strs]));
}
for (const row of out) process.stdout.write(JSON.stringify(row) + "\n");
