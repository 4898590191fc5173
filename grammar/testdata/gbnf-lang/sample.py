#!/usr/bin/env python3
"""Samples texts from llama.cpp's llama-server under each grammar of this folder.

For every NAME.gbnf here (or those named after N), asks POST /completion of the server at $LLAMA_URL
(default http://127.0.0.1:18931) for N completions (default 40) at high
temperature, all samplers but temperature off, a different seed and prompt each,
and writes NAME.samples: one line per completion, "whole" (llama.cpp ended it with
EOS, which its grammar allows only once the text is a sentence) or "prefix" (it
stopped at n_predict), a tab, and the text as a Go string literal. The text is the
tokens' bytes (n_probs 1 returns each drawn token's), not the server's "content",
which replaces bytes that are not UTF-8 by U+FFFD. Standard library only.
"""
import json
import os
import sys
import urllib.request

URL = os.environ.get("LLAMA_URL", "http://127.0.0.1:18931") + "/completion"
N = int(sys.argv[1]) if len(sys.argv) > 1 else 40
PROMPTS = ["Once upon a time", "The answer is", "Here is the list:", "def f(x):", "Dear sir,", ""]
TEMPS = [1.0, 1.5, 2.0, 3.0]


def complete(grammar, prompt, seed, temp, n_predict):
    body = json.dumps({
        "prompt": prompt, "grammar": grammar, "seed": seed, "temperature": temp,
        "top_k": 0, "top_p": 1.0, "min_p": 0.0, "typical_p": 1.0,
        "repeat_penalty": 1.0, "n_predict": n_predict, "cache_prompt": False,
        "n_probs": 1,
    }).encode()
    req = urllib.request.Request(URL, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as r:
        return json.load(r)


def go_quote(b):
    """b as a Go interpreted string literal: UTF-8 kept, other bytes as \\xHH."""
    out = ['"']
    for c in b.decode("utf-8", errors="surrogateescape"):
        o = ord(c)
        if 0xDC80 <= o <= 0xDCFF:
            out.append("\\x%02x" % (o - 0xDC00))
        elif c in '"\\':
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif o < 0x20 or o == 0x7F:
            out.append("\\x%02x" % o)
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    for name in sorted(os.listdir(here)):
        if not name.endswith(".gbnf") or len(sys.argv) > 2 and name[:-5] not in sys.argv[2:]:
            continue
        grammar = open(os.path.join(here, name), "rb").read().decode("utf-8")  # CRLF kept
        lines = []
        for i in range(N):
            seed = 1000 + i
            out = complete(grammar, PROMPTS[i % len(PROMPTS)], seed, TEMPS[i % len(TEMPS)], 160)
            kind = "whole" if out["stop_type"] == "eos" else "prefix"
            text = b"".join(bytes(p["bytes"]) for p in out["completion_probabilities"])
            lines.append(kind + "\t" + go_quote(text) + "\n")
        path = os.path.join(here, name[:-len(".gbnf")] + ".samples")
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(lines)
        whole = sum(l.startswith("whole") for l in lines)
        print(f"{name}: {len(lines)} samples, {whole} whole", file=sys.stderr)


if __name__ == "__main__":
    main()
