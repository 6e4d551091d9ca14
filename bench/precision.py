"""Which bf16 scheme pays on this machine: autocast over fp32 weights, or frozen base weights stored in bf16.

Autocast casts every frozen fp32 weight to bf16 again at every call; storing the frozen backbone in bf16
(LoRA and the head stay fp32) skips those casts but keeps the residual stream in bf16. This times a
training step (forward, backward, AdamW) of lsllm's own model on real SST-2 and CoNLL-2003 batches, and
prediction at batch 1 and 64, in fp32 and both bf16 schemes, interleaved so that machine noise hits
every scheme alike; it reports the ratios to fp32 and the share of the bf16 matmul peak.

    python -m bench.precision            # results in bench/results/precision/
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time

import torch
from transformers import AutoConfig

from bench.common import command_line, environment, markdown_table, model_parser, percent, read_jsonl
from bench.datasets import TASKS, prepare
from bench.flops import Shapes, matmul_peak
from lsllm.atomic import write_json_atomic, write_text_atomic
from lsllm.config import TrainConfig
from lsllm.data.collate import Collator
from lsllm.data.encoding import Encoder
from lsllm.data.examples import SequenceExample
from lsllm.data.task import TaskData, label_map_for
from lsllm.modeling.backbone import load_tokenizer, resolve_model
from lsllm.modeling.lora import add_lora
from lsllm.modeling.model import build_model

SCHEMES = ("fp32", "bf16 autocast", "bf16 weights")
SETUPS = {"sst2": ("sequence", "causal", "last"), "conll2003": ("token", "bidirectional", "last")}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = model_parser("precision", __doc__)
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds; each runs every scheme once")
    parser.add_argument("--batch-size", type=int, default=16)
    return parser.parse_args(argv)


def batches(task_name: str, args: argparse.Namespace, tokenizer, config: TrainConfig) -> tuple:
    """The first training batches of the task, encoded and collated as lsllm's Trainer gets them; one
    example and 64 examples for prediction; the number of labels."""
    paths = prepare(TASKS[task_name], args.data, args.work / "data", seed=0)
    rows = read_jsonl(paths["train"])
    rows = rows[: max(64, args.batch_size * (args.repeats + 1))]
    examples = (
        [SequenceExample(r["text"], label=r["label"]) for r in rows] if config.task == "sequence" else None
    )
    if examples is None:
        from lsllm.data.examples import TokenExample

        examples = [TokenExample(r["tokens"], r["tags"]) for r in rows]
    data = TaskData(config, label_map_for(config, examples), Encoder(tokenizer, 128))
    features = data.encode(examples, task_name)
    collate = Collator(tokenizer.pad_token_id, tokenizer.padding_side, config.task == "token")
    size = args.batch_size
    batched = [collate(features[i : i + size]) for i in range(0, len(features), size)]
    return batched, collate(features[:1]), collate(features[:64]), len(data.labels)


def model_for(scheme: str, config: TrainConfig, labels: int):
    torch.manual_seed(0)
    core = build_model(config, labels)
    if scheme == "bf16 weights":
        core.backbone.to(torch.bfloat16)
    model = add_lora(core, 12, 32, 0.1, None)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    return model, optimizer


def autocast(scheme: str):
    if scheme == "fp32":
        return contextlib.nullcontext()
    return torch.autocast("cpu", dtype=torch.bfloat16)


def train_step(model, optimizer, batch: dict, scheme: str) -> float:
    model.train()
    started = time.perf_counter()
    with autocast(scheme):
        loss = model(**batch)["loss"]
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return time.perf_counter() - started


@torch.no_grad()
def predict_step(model, batch: dict, scheme: str) -> float:
    model.eval()
    started = time.perf_counter()
    with autocast(scheme):
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return time.perf_counter() - started


def measure(args: argparse.Namespace) -> dict:
    path = resolve_model(args.model)
    tokenizer = load_tokenizer(path)
    shapes = Shapes.from_config(AutoConfig.from_pretrained(path))
    results = {"peaks": [], "tasks": {}}
    peaks = {dtype: matmul_peak(1024, shapes, dtype, "cpu") for dtype in ("fp32", "bf16")}
    for task_name, (task, attention, pooling) in SETUPS.items():
        config = TrainConfig(model=path, task=task, attention=attention, pooling=pooling)
        train_batches, single, wide, labels = batches(task_name, args, tokenizer, config)
        models = {scheme: model_for(scheme, config, labels) for scheme in SCHEMES}
        wide = {k: v for k, v in wide.items() if k != "labels"}
        single = {k: v for k, v in single.items() if k != "labels"}
        timings = {scheme: {"train": [], "predict 1": [], "predict 64": []} for scheme in SCHEMES}
        for scheme, (model, optimizer) in models.items():  # warm-up: allocation, kernel choice
            train_step(model, optimizer, train_batches[0], scheme)
            predict_step(model, single, scheme)
        for round_number in range(args.repeats):
            batch = train_batches[1 + round_number]
            for scheme, (model, optimizer) in models.items():
                timings[scheme]["train"].append(train_step(model, optimizer, batch, scheme))
                timings[scheme]["predict 1"].append(predict_step(model, single, scheme))
                timings[scheme]["predict 64"].append(predict_step(model, wide, scheme))
            print(f"{task_name}: round {round_number + 1}/{args.repeats} done", file=sys.stderr)
        lengths = [int(b["attention_mask"].sum()) for b in train_batches[1 : 1 + args.repeats]]
        results["tasks"][task_name] = {
            "mode": attention,
            "tokens_per_train_step": statistics.mean(lengths),
            "train_flops_per_step": statistics.mean(
                shapes.training(b["attention_mask"].sum(1).tolist(), 12)
                for b in train_batches[1 : 1 + args.repeats]
            ),
            "median_seconds": {
                s: {k: statistics.median(v) for k, v in t.items()} for s, t in timings.items()
            },
        }
    # The peak is measured after the steps too, and the better of the two kept: a busy moment lowers it.
    for dtype in ("fp32", "bf16"):
        results["peaks"].append(max(peaks[dtype], matmul_peak(1024, shapes, dtype, "cpu"), key=_flops))
    return results


def _flops(peak: dict) -> float:
    return peak["flops_per_second"]


def table(results: dict, meta: dict) -> str:
    peak = {p["dtype"]: p["flops_per_second"] for p in results["peaks"]}
    hardware = meta["environment"]["hardware"]
    lines = [
        "# bf16 schemes against fp32",
        "",
        f"CPU: {hardware['cpu']}, features {', '.join(hardware['cpu_features'])}; {hardware['torch_threads']}"
        f" threads. Matmul peak: fp32 {peak['fp32'] / 1e9:.0f}, bf16 {peak['bf16'] / 1e9:.0f} GFLOP/s.",
        "",
        "Median seconds per call (ratio to fp32; above 1 is faster), and training's share of the matmul"
        " peak of its number format.",
        "",
    ]
    rows = []
    for name, task in results["tasks"].items():
        seconds = task["median_seconds"]
        for scheme in SCHEMES:
            cells = [
                f"{seconds[scheme][k]:.3f} ({seconds['fp32'][k] / seconds[scheme][k]:.2f}x)"
                for k in ("train", "predict 1", "predict 64")
            ]
            reference = peak["fp32" if scheme == "fp32" else "bf16"]
            share = task["train_flops_per_step"] / seconds[scheme]["train"] / reference
            rows.append([f"{name} ({task['mode']})", scheme, *cells, percent(share, ".0f", "%")])
    header = ["task", "scheme", "train step", "predict batch 1", "predict batch 64", "train FLOP/s share"]
    lines += [*markdown_table(header, rows), "", f"Command: `{meta['command']}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_grad_enabled(True)
    meta = {
        "command": command_line("bench.precision", argv),
        "environment": environment(),
    }
    results = measure(args)
    args.results.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.results / "results.json", {**meta, **results})
    write_text_atomic(args.results / "table.md", table(results, meta))
    print(table(results, meta))


if __name__ == "__main__":
    main()
