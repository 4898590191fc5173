#!/usr/bin/env python3
"""Makes llamacpp_teacher_forced_synth.jsonl (see README.md): llama.cpp's argmax and margin
after every forced position of the arch reference's sequences, on the synthetic models
that `go test ./model -run TestSynthTeacherForced -args -write-synth DIR` writes.

usage: make_synth_reference.py DIR LLAMA_TEACHER_FORCED ARCH_REFERENCE_JSONL > OUT
"""
import hashlib, json, subprocess, sys

FILES = ["synth-llama-linear.gguf", "synth-llama-yarn.gguf", "synth-qwen2-yarn.gguf", "synth-llama-headdim.gguf"]

def main():
    d, prog, ref = sys.argv[1:4]
    seqs = [json.loads(l) for l in open(ref)]
    seqs = [r for r in seqs if r["file"] == "arch-qwen2-f16.gguf"]  # one row per sequence
    for name in FILES:
        path = f"{d}/{name}"
        sha = hashlib.sha256(open(path, "rb").read()).hexdigest()
        lines = []
        for r in seqs:
            ids = r["prompt_ids"] + r["forced_ids"][:-1]
            lines.append(" ".join(map(str, ids)))
        out = subprocess.run([prog, path, "2"], input="\n".join(lines) + "\n", capture_output=True, text=True, check=True).stdout
        for r, line in zip(seqs, out.strip().split("\n")):
            pairs = [p.split(":") for p in line.split()]
            first = len(r["prompt_ids"]) - 1
            pairs = pairs[first:first + len(r["forced_ids"])]
            assert len(pairs) == len(r["forced_ids"]), (name, r["id"], len(pairs))
            print(json.dumps({
                "file": name, "sha256": sha, "id": r["id"],
                "prompt_ids": r["prompt_ids"], "forced_ids": r["forced_ids"],
                "llamacpp_top1": [int(a) for a, _ in pairs],
                "llamacpp_margin": [float(b) for _, b in pairs],
            }, separators=(",", ":")))

main()
