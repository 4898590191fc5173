#!/usr/bin/env bash
# bench-engine.sh: decode and prefill tokens per second of `specd run --json` for the
# shared models, at 1 and 2 threads, the median of REPS runs each, as a markdown table
# with the ratio to llama.cpp's llama-bench figures from ../shared/reference/README.md
# (tg128 and pp128, same files, same machine kind).
#
#   bash scripts/bench-engine.sh [REPS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
reps=${1:-5}
bin=$(mktemp -d)/specd
go build -o "$bin" ./cmd/specd
# A prompt of at least 128 tokens: the benchmark prompts, joined.
prompt=$(python3 -c 'import json,sys; print(" ".join(json.loads(l)["prompt"] for l in open(sys.argv[1])))' "${SPECD_PROMPTS:-../shared/bench/prompts.jsonl}" | head -c 700)

# model quant threads llama.cpp-prefill llama.cpp-decode
configs=(
  "specd-target-q8_0 - 1 1852 749"
  "specd-target-q8_0 - 2 3569 691"
  "specd-target-q8_0 q4_0 1 3169 989"
  "specd-target-q8_0 q4_0 2 5711 935"
  "specd-target-q8_0 f32 1 - -"
  "specd-target-q8_0 f32 2 - -"
  "specd-draft-f16 - 1 15060 4217"
  "specd-draft-f16 - 2 25374 2469"
  "specd-draft-q8_0 - 1 16880 4720"
  "specd-draft-q8_0 - 2 28001 2614"
  "specd-draft-q4_0 - 1 24092 5352"
  "specd-draft-q4_0 - 2 37921 2733"
)
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '| model | weights | threads | prefill tok/s (%s tokens) | × llama.cpp pp128 | decode tok/s | × llama.cpp tg128 |\n|---|---|---|---|---|---|---|\n' "$("$bin" run -m specd-target-q8_0 -p "$prompt" -n 1 --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["prompt_ids"]))')"
for c in "${configs[@]}"; do
  read -r model quant threads lpp ltg <<<"$c"
  qflag=()
  [ "$quant" != "-" ] && qflag=(--quant "$quant")
  pre=(); dec=()
  for _ in $(seq "$reps"); do
    # Prefill: the long prompt. Decode: 128 tokens after a short prompt, as tg128
    # generates from an almost empty context.
    out=$("$bin" run -m "$model" "${qflag[@]}" --threads "$threads" -p "$prompt" -n 1 --temp 0 --json)
    pre+=("$(python3 -c 'import json,sys; print(json.load(sys.stdin)["prefill_tokens_per_second"])' <<<"$out")")
    out=$("$bin" run -m "$model" "${qflag[@]}" --threads "$threads" -p "Once upon a time" -n 129 --temp 0 --json)
    dec+=("$(python3 -c 'import json,sys; print(json.load(sys.stdin)["decode_tokens_per_second"])' <<<"$out")")
  done
  p=$(printf '%s\n' "${pre[@]}" | median)
  d=$(printf '%s\n' "${dec[@]}" | median)
  ratio() { [ "$2" = "-" ] && echo "—" || python3 -c "print(f'{$1/$2:.2f}')"; }
  printf '| %s | %s | %s | %.0f | %s | %.0f | %s |\n' "$model" "${quant/-/as stored}" "$threads" "$p" "$(ratio "$p" "$lpp")" "$d" "$(ratio "$d" "$ltg")"
done
