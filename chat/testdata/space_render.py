"""Renders random arrangements of tags, whitespace control markers, braces and
whitespace as Hugging Face's Jinja2 does, for chat's TestSpaceMatchesJinja2.

Run from chat/testdata with Python's Jinja2 (3.1.6 here):
    python3 space_render.py > space_cases.jsonl

Each line is a template and Jinja2's rendering of it (with no messages); templates
Jinja2 refuses are left out. The generator is seeded, so the file is reproducible.
"""

import json
import random
import sys

import jinja2

import hf_render

SEED = 20261207
CASES = 400

# Texts between tags: whitespace of every kind the rules treat apart, and braces that
# could join a neighbouring tag's opening.
TEXTS = ["", "", " ", "\n", "  \n  ", "a", "\n\n", " x \n", "\t", "\n  ", "b  ", "\u00a0",
         "{", "a{ ", "{\n", "}", " }"]


def marker(rng, plus=True):
    return rng.choice(["", "", "-", "+"] if plus else ["", "-"])


def tag(rng):
    k = rng.randrange(5)
    if k == 0:
        return "{{%s 'e' %s}}" % (marker(rng, False), marker(rng, False)), False
    if k == 1:
        return "{#%s c %s#}" % (marker(rng), marker(rng)), False
    if k == 2:
        return "{%%%s set x = 1 %s%%}" % (marker(rng), marker(rng)), False
    if k == 3:
        return "{%%%s if true %s%%}" % (marker(rng), marker(rng)), True
    inner = rng.choice(["", " ", "\n "])
    return "{%%%s raw %s%%} r {{ x }} %s{%%%s endraw %s%%}" % (
        rng.choice(["", "-"]), rng.choice(["", "-"]), inner, marker(rng), marker(rng)), False


def template(rng):
    parts, opens = [], 0
    for _ in range(rng.randrange(2, 9)):
        parts.append(rng.choice(TEXTS))
        t, opened = tag(rng)
        if opened:
            opens += 1
        elif opens and rng.random() < 0.3:
            t = "{%%%s endif %s%%}" % (marker(rng), marker(rng))
            opens -= 1
        parts.append(t)
    parts.append(rng.choice(TEXTS))
    for _ in range(opens):
        parts.append("{%%%s endif %s%%}" % (marker(rng), marker(rng)))
        parts.append(rng.choice(TEXTS))
    return "".join(parts)


def main():
    rng = random.Random(SEED)
    env = hf_render.environment()
    written = 0
    while written < CASES:
        src = template(rng)
        try:
            text = env.from_string(src).render(messages=[], tools=None, documents=None,
                                               add_generation_prompt=False, bos_token="<s>", eos_token="</s>")
        except jinja2.exceptions.TemplateError:
            continue
        sys.stdout.write(json.dumps({"template": src, "text": text}, ensure_ascii=False) + "\n")
        written += 1


if __name__ == "__main__":
    main()
