"""Writes spm_oracle.jsonl: encode and decode cases answered by SentencePiece itself.

Run from tokenizer/ with Debian's python3-sentencepiece (0.1.97):
    /usr/bin/python3 testdata/gen_spm_oracle.py ../../shared > testdata/spm_oracle.jsonl
The model is specd-tok4096.model, whose pieces the specd GGUF files carry. Encode cases
are ids without BOS; decode cases are random id sequences and SentencePiece's text.
"""
import json
import random
import sys

import sentencepiece

shared = sys.argv[1]
sp = sentencepiece.SentencePieceProcessor(model_file=shared + "/models/specd-tok4096.model")
rng = random.Random(20261127)

prompts = []
for name in ["reference/pair_f32.jsonl", "reference/stories260K_llama2c.jsonl", "bench/prompts.jsonl"]:
    with open(shared + "/" + name) as f:
        for line in f:
            p = json.loads(line)["prompt"]
            if p and p not in prompts:
                prompts.append(p)

odd = ["  ", " ", "\t", "\n", "\r\n", "\x00", "\x7f", "\u2581", "\u2581\u2581", "<s>", "</s>",
       "<unk>", "<0x41>", "é", "e\u0301", "ß", "Ω", "中文", "日本語", "한국어", "😀", "👩‍👩‍👧",
       "🇫🇷", "\ufffd", "\u200b", "\ufeff", "𝑦", "太郎", "ｆｕｌｌ", "\u00a0", "’", "—", "…",
       ">>>", "def f(x):\n    return x", "ÅNGSTRÖM", "naïve café", "\U0010ffff", "\u0600"]

texts = ["", "a", " a", "a ", "  leading", "trailing  ", "Hello world", "hello  world"]
texts += odd
texts += prompts
for _ in range(260):
    p = rng.choice(prompts)
    i = rng.randrange(len(p))
    s = p[i:i + rng.randrange(1, 120)]
    for _ in range(rng.randrange(0, 4)):
        j = rng.randrange(len(s) + 1)
        s = s[:j] + rng.choice(odd) + s[j:]
    texts.append(s)
for _ in range(60):
    texts.append("".join(chr(rng.choice([rng.randrange(0x20, 0x7f), rng.randrange(0xa0, 0x800),
                                          rng.randrange(0x3000, 0xa000), rng.randrange(0x1f300, 0x1f700)]))
                         for _ in range(rng.randrange(1, 30))))

for t in texts:
    print(json.dumps({"op": "encode", "text": t, "ids": sp.encode(t)}, ensure_ascii=False))

n = sp.get_piece_size()
meta = [i for i in range(n) if sp.id_to_piece(i).startswith("\u2581")]
for _ in range(250):
    ids = []
    for _ in range(rng.randrange(0, 12)):
        k = rng.random()
        if k < 0.1:
            ids.append(rng.randrange(0, 3))
        elif k < 0.45:
            ids.append(3 + rng.choice([rng.randrange(0, 0x80), rng.randrange(0x80, 0xc0),
                                       rng.randrange(0xc0, 0x100)]))
        elif k < 0.5:
            ids.extend(3 + b for b in rng.choice(odd).encode("utf-8"))
        elif k < 0.75:
            ids.append(rng.choice(meta))
        else:
            ids.append(rng.randrange(259, n))
    print(json.dumps({"op": "decode", "ids": ids, "text": sp.decode(ids)}, ensure_ascii=False))
