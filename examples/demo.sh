#!/usr/bin/env bash
# The README's demo: fine-tune SmolLM2-135M on BBC News topics (CPU, a few minutes), evaluate, predict.
set -euo pipefail
out=${1:-demo}
python examples/bbc_news.py "$out/bbc"
lsllm train --model smollm2-135m --task sequence --pooling last --attention causal \
  --train "$out/bbc/train.jsonl" --dev "$out/bbc/dev.jsonl" --test "$out/bbc/test.jsonl" \
  --output "$out/bbc-run" --epochs 1 --batch-size 16 --max-length 64 --learning-rate 5e-4 --precision auto
lsllm predict "$out/bbc-run" "Shares in the carmaker jumped after it reported record quarterly profits"
