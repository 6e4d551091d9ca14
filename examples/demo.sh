#!/usr/bin/env bash
# The README's demo: fine-tune SmolLM2-135M on BBC News topics (1.5-4 minutes on 2 CPU cores), evaluate, predict.
set -euo pipefail
out=${1:-demo}
python examples/bbc_news.py "$out/bbc"
lsllm train --model smollm2-135m --task sequence --pooling last --attention causal \
  --train "$out/bbc/train.jsonl" --dev "$out/bbc/dev.jsonl" --test "$out/bbc/test.jsonl" \
  --output "$out/bbc-run" --epochs 3 --batch-size 16 --max-length 64 --learning-rate 1e-3 --precision auto
lsllm predict "$out/bbc-run" "Shares in the carmaker jumped after it reported record quarterly profits"
