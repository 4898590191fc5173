#!/bin/bash
# Reads grammars, one a line as a Go-quoted string, and prints each with llama.cpp
# b4748's verdict: "refused" when llama-cli reports a parse error or left recursion
# (or stops on the grammar), "accepted" when it generates under it.
L=/work/shared/tools/llama.cpp-b4748
while IFS= read -r q; do
  g=$(python3 -c 'import sys,json; print(json.loads(sys.argv[1]), end="")' "$q")
  out=$(LD_LIBRARY_PATH=$L timeout 60 $L/llama-cli -m /work/shared/models/stories260K-f32.gguf -n 8 -p "x" --grammar "$g" -no-cnv --temp 0 --seed 1 2>&1)
  rc=$?
  if echo "$out" | grep -q "error parsing grammar\|left recursion detected"; then
    v=refused; why=$(echo "$out" | grep -o "error parsing grammar: .*\|left recursion detected.*" | head -1 | cut -c1-60)
  elif [ $rc -ne 0 ]; then
    v=crashed; why="exit $rc $(echo "$out" | grep -o "what(): .*" | head -1)"
  else
    v=accepted; why=""
  fi
  printf '%s\t%s\t%s\n' "$q" "$v" "$why"
done
