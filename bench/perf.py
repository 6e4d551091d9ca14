"""Speed and memory: lsllm against the usual transformers recipe, same model, data and machine.

    python -m bench.perf                              # SmolLM2-135M, all parts (est. 15-20 min, 2 cores)
    python -m bench.perf --only predict               # one part: train, predict, flops and/or runtime
    python -m bench.perf --random-config llama-8b     # GPU: a Llama-style model with random weights
    bash bench/gpu.sh                                 # GPU: 1B, 3B and 8B, with and without 4-bit, DDP

Training: lsllm.train against AutoModelFor*Classification + peft LoRA + Trainer (default settings), SST-2
and CoNLL-2003, causal and bidirectional, timed by the Trainer's own train_runtime; both load the backbone
in the number format they train in, and with --quantize 4bit both load it as QLoRA does (NF4, double
quantisation, bf16 compute; the baseline through peft's prepare_model_for_kbit_training). --ddp N adds
lsllm on N GPUs under torchrun. Prediction:
lsllm.load(run).predict against transformers.pipeline, at batch 1 and 64. FLOPs: counted from the
model's shapes (bench/flops.py) against the measured torch.matmul peak. Runtime: lsllm's torch model in
fp32, int8 and auto against its ONNX export in onnxruntime, fp32 and int8 (bench/runtimes.py), SST-2
sentences at each batch size, as ratios to torch fp32. Every measurement runs in its
own process (clean peak memory); every figure is reported as a ratio lsllm / baseline.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from dataclasses import replace
from functools import partial
from pathlib import Path

from bench.common import (
    DATA,
    INT8,
    RESULTS,
    ROOT,
    SCRATCH,
    SMOLLM2,
    Settings,
    argument_parser,
    command_line,
    environment,
    fresh_dir,
    peak_rss_mb,
    percentile,
    precision,
    read_jsonl,
    run_child,
    save_random_run,
    task_labels,
    timed,
)
from bench.datasets import TASKS, Task, prepare
from bench.flops import Shapes, matmul_peak
from bench.runtimes import RUNTIME_SYSTEMS, export_onnx
from bench.runtimes import TASK as RUNTIME_TASK
from bench.runtimes import measure as measure_runtime
from lsllm.atomic import write_json_atomic
from lsllm.config import QUANTIZATIONS

TASK_ORDER = ("sst2", "conll2003")
MODES = ("causal", "bidirectional")
SYSTEMS = ("lsllm", "baseline")
# Prediction adds lsllm with --precision int8 (the system INT8, named in bench.common for the report too;
# CPU only, so not with --random-config, which is for a GPU): the way past the weight-bandwidth bound of
# single-text prediction (see bench/README.md).
PARTS = ("train", "predict", "flops", "runtime")
EPOCHS = 1
# lsllm's pooling per mode, as in the accuracy benchmark (LS-LLaMA: last token, LS-unLLaMA: mean); the
# baseline's AutoModelForSequenceClassification always pools the last token.
POOLING = {"causal": "last", "bidirectional": "mean"}
# Shapes of Llama 3.2 1B / 3B and Llama 3.1 8B, for --random-config without a config file at hand.
LLAMA_CONFIGS = {
    "llama-1b": dict(
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=64,
        tie_word_embeddings=True,
    ),
    "llama-3b": dict(
        hidden_size=3072,
        intermediate_size=8192,
        num_hidden_layers=28,
        num_attention_heads=24,
        num_key_value_heads=8,
        head_dim=128,
        tie_word_embeddings=True,
    ),
    "llama-8b": dict(
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        tie_word_embeddings=False,
    ),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argument_parser("bench.perf", __doc__)
    parser.add_argument("--data", type=Path, default=DATA, help="dataset folder")
    parser.add_argument("--model", default=SMOLLM2, help="built-in name or Llama-style model folder")
    parser.add_argument(
        "--random-config",
        help=f"a config.json (or its folder), or one of {', '.join(LLAMA_CONFIGS)}: a model of that shape"
        " with random weights and the SmolLM2 tokenizer, instead of --model (for a GPU: bf16 autocast there)",
    )
    parser.add_argument("--train-examples", type=int, default=256, help="seeded training subsample per task")
    parser.add_argument("--dev-examples", type=int, default=16, help="dev set evaluated after the epoch")
    parser.add_argument("--predict-examples", type=int, default=256, help="inputs predicted per batch size")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64], help="prediction batch sizes")
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS), help="measure only these")
    parser.add_argument("--tasks", nargs="+", choices=TASK_ORDER, default=list(TASK_ORDER), help="tasks")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="attention modes")
    parser.add_argument(
        "--quantize",
        nargs="+",
        choices=QUANTIZATIONS,
        default=["none"],
        help="train both systems with each of these backbones (4bit/8bit: CUDA and bitsandbytes)",
    )
    parser.add_argument(
        "--ddp",
        type=int,
        default=0,
        metavar="N",
        help="also train lsllm on N GPUs (torchrun, DDP; first task, mode and --quantize)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for subsamples, initialisation, data order")
    parser.add_argument("--results", type=Path, default=RESULTS / "perf", help="where outputs go")
    parser.add_argument("--work", type=Path, default=SCRATCH / "perf", help="scratch space")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="shrink the example counts (smoke tests), e.g. 0.05"
    )
    parser.add_argument("--one", nargs="+", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def counts(args: argparse.Namespace) -> tuple[int, int, int]:
    """Training, dev and prediction examples, after --scale."""
    sizes = (args.train_examples, args.dev_examples, args.predict_examples)
    train, dev, predict = (max(2, round(n * args.scale)) for n in sizes)
    return train, dev, predict


def perf_task(args: argparse.Namespace, name: str) -> Task:
    """The accuracy benchmark's task with this benchmark's budget: N training examples, one epoch."""
    task = TASKS[name]
    train, dev, _ = counts(args)
    return replace(
        task, budget=replace(task.budget, train_examples=train, selection_examples=dev, epochs=EPOCHS)
    )


def task_paths(args: argparse.Namespace, task: Task) -> dict[str, Path]:
    """The seeded splits as JSONL, written once per size; every system reads the same files."""
    folder = args.work / "data" / f"train{task.budget.train_examples}-dev{task.budget.selection_examples}"
    return prepare(task, args.data, folder, args.seed)


def predict_rows(args: argparse.Namespace, paths: dict[str, Path]) -> list[dict]:
    """A seeded sample of the evaluation split (SST-2 dev, CoNLL-2003 test) to predict."""
    rows = read_jsonl(paths["evaluation"])
    size = counts(args)[2]
    return rows if size >= len(rows) else random.Random(args.seed).sample(rows, size)


# --- the model ---------------------------------------------------------------------------------------


def _random_config_values(spec: str) -> dict:
    if spec in LLAMA_CONFIGS:
        return {
            "model_type": "llama",
            "vocab_size": 128256,
            "max_position_embeddings": 8192,
            **LLAMA_CONFIGS[spec],
        }
    path = Path(spec).expanduser()
    path = path / "config.json" if path.is_dir() else path
    if not path.is_file():
        raise SystemExit(f"bench.perf: --random-config {spec}: no such file; pass a config.json or a name")
    return json.loads(path.read_text(encoding="utf-8"))


def model_path(args: argparse.Namespace) -> str:
    """The model folder both systems load: --model, or the random-weight folder of --random-config."""
    if not args.random_config:
        from lsllm.modeling.backbone import resolve_model

        return resolve_model(args.model)
    values = _random_config_values(args.random_config)
    key = hashlib.sha1(json.dumps([values, args.seed], sort_keys=True).encode()).hexdigest()[:12]
    return str(args.work / "models" / f"random-{key}")


def build_random_model(args: argparse.Namespace, folder: Path) -> None:
    """Save a model of the --random-config shape with random weights and the SmolLM2 tokenizer (once)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from lsllm.modeling.backbone import load_tokenizer, resolve_model

    if (folder / "config.json").exists():
        return
    values = dict(_random_config_values(args.random_config))
    for key in ("architectures", "transformers_version", "_name_or_path", "torch_dtype", "dtype"):
        values.pop(key, None)
    config = AutoConfig.for_model(values.pop("model_type", "llama"), **values)
    tokenizer = load_tokenizer(resolve_model(SMOLLM2))
    config.vocab_size = max(config.vocab_size, len(tokenizer))
    config.pad_token_id, config.bos_token_id = tokenizer.pad_token_id, tokenizer.bos_token_id
    config.eos_token_id = tokenizer.eos_token_id
    torch.manual_seed(args.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    os.replace(staging, folder)


def shapes_of(path: str) -> Shapes:
    from transformers import AutoConfig

    return Shapes.from_config(AutoConfig.from_pretrained(path))


# --- training ----------------------------------------------------------------------------------------


def train_lsllm(
    task: Task, mode: str, paths, labels, path: str, settings: Settings, work: Path, quantize: str
) -> dict:
    from bench.recipe import lsllm_config
    from lsllm import train
    from lsllm.artifacts import TRAINING_LOG

    config = lsllm_config(path, task, paths, labels, settings, work / "run", mode, POOLING[mode])
    train(replace(config, quantize=quantize))
    return {"history": read_jsonl(work / "run" / TRAINING_LOG), "lengths": lsllm_lengths(config), "notes": []}


def lsllm_lengths(config) -> list[int]:
    """Real tokens of each training example, as lsllm encodes them."""
    from lsllm.data.encoding import Encoder
    from lsllm.data.task import TaskData, label_map_for
    from lsllm.modeling.backbone import load_tokenizer

    tokenizer = load_tokenizer(config.model)
    data = TaskData(config, label_map_for(config, []), Encoder(tokenizer, config.max_length))
    return [
        len(f["input_ids"]) for f in data.encode(data.read(config.train), config.train, with_labels=False)
    ]


def train_baseline(
    task: Task, mode: str, paths, labels, path: str, settings: Settings, work: Path, quantize: str
) -> dict:
    import torch

    from bench.hf_baseline import baseline_model, build_trainer
    from bench.recipe import with_lora

    # Loaded in the format it trains in, as lsllm is: bf16 where lsllm's precision 'auto' picks it.
    dtype = torch.bfloat16 if precision() == "bf16" else torch.float32
    tokenizer, model, notes = baseline_model(task.kind, labels, path, mode, dtype, quantize)
    model = with_lora(model, settings, "SEQ_CLS" if task.kind == "sequence" else "TOKEN_CLS")
    rows = {split: read_jsonl(paths[split]) for split in ("train", "selection")}
    trainer, encoded = build_trainer(
        task, tokenizer, model, labels, rows, settings, work, settings.learning_rate
    )
    trainer.train()
    return {
        "history": trainer.state.log_history,
        "lengths": [len(row["input_ids"]) for row in encoded["train"]],
        "notes": notes,
    }


def measure_training(
    args: argparse.Namespace, name: str, mode: str, system: str, quantize: str = "none"
) -> dict:
    task = perf_task(args, name)
    paths = task_paths(args, task)
    labels = task_labels(task, paths)
    settings = Settings(seed=args.seed)
    path = model_path(args)
    work = args.work / "runs" / f"train__{name}__{mode}__{system}__{quantize}"
    fresh_dir(work)
    run = train_lsllm if system == "lsllm" else train_baseline
    result = run(task, mode, paths, labels, path, settings, work, quantize)
    shutil.rmtree(work, ignore_errors=True)
    return training_record(task, name, mode, system, quantize, path, settings, result)


def measure_ddp(args: argparse.Namespace, name: str, mode: str, quantize: str, gpus: str) -> dict:
    """lsllm on `gpus` GPUs as a user launches it, torchrun -m lsllm train (DDP): each process takes the
    benchmark's batch, so a step trains `gpus` times as many examples."""
    from bench.recipe import lsllm_config
    from lsllm.artifacts import TRAINING_LOG

    task = perf_task(args, name)
    paths = task_paths(args, task)
    settings = Settings(seed=args.seed)
    path = model_path(args)
    work = args.work / "runs" / f"ddp__{name}__{mode}__{quantize}__{gpus}"
    fresh_dir(work)
    config = lsllm_config(
        path, task, paths, task_labels(task, paths), settings, work / "run", mode, POOLING[mode]
    )
    config = replace(config, quantize=quantize)
    config.save(work / "run.yaml")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", gpus]
    subprocess.run([*launcher, "-m", "lsllm", "train", "--config", str(work / "run.yaml")], check=True)
    result = {
        "history": read_jsonl(work / "run" / TRAINING_LOG),
        "lengths": lsllm_lengths(config),
        "notes": [],
    }
    shutil.rmtree(work, ignore_errors=True)
    record = training_record(task, name, mode, "lsllm", quantize, path, settings, result)
    return {**record, "part": "ddp", "gpus": int(gpus)}


def training_record(
    task: Task, name: str, mode: str, system: str, quantize: str, path: str, settings: Settings, result: dict
) -> dict:
    """What a training run measured: throughput over real tokens, FLOPs counted from the shapes, and the
    backbone's weights for MFU."""
    from lsllm.modeling.memory import ModelShape

    history = result["history"]
    final = next(record for record in reversed(history) if "train_runtime" in record)
    runtime = final["train_runtime"]
    eval_seconds = sum(record["eval_runtime"] for record in history if "eval_runtime" in record)
    lengths = result["lengths"]
    return {
        "part": "train",
        "task": name,
        "kind": task.kind,
        "mode": mode,
        "pooling": (POOLING[mode] if system == "lsllm" else "last") if task.kind == "sequence" else None,
        "system": system,
        "precision": precision(),
        "quantize": quantize,
        "params": ModelShape.from_pretrained(path).weights,
        "examples": len(lengths),
        "dev_examples": task.budget.selection_examples,
        "epochs": EPOCHS,
        "max_length": task.budget.max_length,
        "real_tokens": sum(lengths) * EPOCHS,
        "train_runtime": runtime,
        "eval_seconds": eval_seconds,
        "steps": final.get("step"),
        "train_loss": final.get("train_loss"),
        "examples_per_second": len(lengths) * EPOCHS / runtime,
        "tokens_per_second": sum(lengths) * EPOCHS / runtime,
        "flops": shapes_of(path).training(lengths, settings.lora_r) * EPOCHS,
        "flop_seconds": runtime - eval_seconds,  # the steps, without the dev evaluation
        "notes": result["notes"],
        "history": history,
    }


# --- prediction --------------------------------------------------------------------------------------


def predict_run(args: argparse.Namespace, name: str) -> Path:
    return args.work / "runs" / f"predict__{name}"


def make_run(args: argparse.Namespace, name: str) -> None:
    """An lsllm run folder as training leaves it, with a random head and LoRA (speed ignores weights)."""
    from lsllm.config import TrainConfig

    task = perf_task(args, name)
    labels = task_labels(task, task_paths(args, task))
    config = TrainConfig(
        model=model_path(args), task=task.kind, labels=labels, max_length=task.budget.max_length
    )
    folder = predict_run(args, name)
    shutil.rmtree(folder, ignore_errors=True)
    save_random_run(config, labels, folder, args.seed)


def predict_dtype():
    """Both systems predict in the number format lsllm's precision 'auto' picks on this device: lsllm puts
    its backbone in it, and the baseline is loaded in it, as a transformers user would (dtype=...)."""
    import torch

    return {"bf16": torch.bfloat16, "fp32": torch.float32}[precision()]


def latency(call, inputs: list, batch_size: int) -> dict:
    """Time `call` on consecutive chunks of `batch_size` inputs (after one warm-up call)."""
    call(inputs[:batch_size], batch_size)
    seconds = [
        timed(partial(call, inputs[i : i + batch_size], batch_size))[1]
        for i in range(0, len(inputs), batch_size)
    ]
    total = sum(seconds)
    return {
        "batch_size": batch_size,
        "calls": len(seconds),
        "seconds": total,
        "examples_per_second": len(inputs) / total,
        "p50_ms": 1000 * percentile(seconds, 0.5),
        "p99_ms": 1000 * percentile(seconds, 0.99),
        "max_ms": 1000 * max(seconds),
    }


def measure_prediction(args: argparse.Namespace, name: str, system: str) -> dict:
    """Examples/s and per-call latency at each batch size; lsllm predicts words, the pipeline their text."""
    import torch

    task = perf_task(args, name)
    paths = task_paths(args, task)
    rows = predict_rows(args, paths)
    labels = task_labels(task, paths)
    path = model_path(args)
    mode = "causal" if task.kind == "sequence" else "bidirectional"  # lsllm's defaults, for both systems
    notes = []
    if system in ("lsllm", INT8):
        from lsllm import load
        from lsllm.data.encoding import join_words
        from lsllm.data.examples import SequenceExample

        classifier = load(predict_run(args, name), precision="int8" if system == INT8 else "auto")
        if task.kind == "sequence":
            inputs = [row["text"] for row in rows]
            features = classifier.data.encode(
                [SequenceExample(t) for t in inputs], "texts", with_labels=False
            )
            lengths = [len(feature["input_ids"]) for feature in features]
        else:
            inputs = [row["tokens"] for row in rows]
            encoder = classifier.data.encoder
            windows = [w for words in inputs for w in encoder.windows(*join_words(words), mode == "causal")]
            lengths = [len(window.input_ids) for window in windows]

        def call(chunk: list, batch_size: int) -> list:
            return classifier.predict(chunk, batch_size=batch_size)
    else:
        from transformers import pipeline

        from bench.hf_baseline import baseline_model

        tokenizer, model, notes = baseline_model(task.kind, labels, path, mode)
        model.to(predict_dtype())
        inputs = [row["text"] if task.kind == "sequence" else " ".join(row["tokens"]) for row in rows]
        lengths = [len(tokenizer(text)["input_ids"]) for text in inputs]
        pipe = pipeline(
            "text-classification" if task.kind == "sequence" else "token-classification",
            model=model,
            tokenizer=tokenizer,
            device="cuda" if torch.cuda.is_available() else "cpu",
        )

        def call(chunk: list, batch_size: int) -> list:
            return pipe(chunk, batch_size=batch_size)

    batches = [latency(call, inputs, size) for size in args.batch_sizes]
    return {
        "part": "predict",
        "task": name,
        "kind": task.kind,
        "mode": mode,
        "system": system,
        "precision": "int8" if system == INT8 else precision(),
        "examples": len(inputs),
        "sequences": len(lengths),
        "real_tokens": sum(lengths),
        "flops": shapes_of(path).forward(lengths),
        "batches": batches,
        "notes": notes,
    }


# --- the matmul peak ---------------------------------------------------------------------------------


def measure_peak(args: argparse.Namespace) -> dict:
    """torch.matmul FLOP/s on the model's MLP shape, fp32 and bf16, on the device the systems use."""
    import torch

    from lsllm.modeling.precision import bf16_is_fast, cpu_has_bf16_units

    shapes = shapes_of(model_path(args))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    # Units, not auto's choice: a CPU whose bf16 units are slower than its fp32 still runs bf16 natively.
    native = bf16_is_fast(torch.device(device))[0] if device == "cuda" else cpu_has_bf16_units()
    tokens = 8192 if device == "cuda" else 1024
    bf16_tokens = tokens if native else 64  # emulated bf16 is ~100x slower
    return {
        "part": "flops",
        "shapes": shapes.to_dict(),
        "bf16_native": native,
        "peaks": [
            matmul_peak(tokens, shapes, "fp32", device),
            matmul_peak(bf16_tokens, shapes, "bf16", device),
        ],
    }


# --- running it all ----------------------------------------------------------------------------------


def jobs(args: argparse.Namespace) -> list[list[str]]:
    """What to measure, each in its own process: setup first, then the peak, training, prediction."""
    todo = []
    if args.random_config or {"predict", "runtime"} & set(args.only):
        todo.append(["setup"])
    if "flops" in args.only:
        todo.append(["peak"])
    if "train" in args.only:
        todo += [
            ["train", t, m, s, q]
            for t in args.tasks
            for m in args.modes
            for q in args.quantize
            for s in SYSTEMS
        ]
        if args.ddp > 1:
            todo.append(["ddp", args.tasks[0], args.modes[0], args.quantize[0], str(args.ddp)])
    if "predict" in args.only:
        systems = SYSTEMS if args.random_config else (*SYSTEMS, INT8)  # random configs are for a GPU
        todo += [["predict", t, s] for t in args.tasks for s in systems]
    if "runtime" in args.only and not args.random_config:  # onnxruntime here runs on the CPU
        todo += [["runtime", RUNTIME_TASK, s] for s in RUNTIME_SYSTEMS]
    return todo


def run_job(args: argparse.Namespace, job: list[str]) -> dict:
    """One job in this process; its record, with peak memory and the environment."""
    import torch

    kind, *rest = job
    if kind == "setup":
        if args.random_config:
            build_random_model(args, Path(model_path(args)))
        if "predict" in args.only:
            for name in args.tasks:
                make_run(args, name)
        if "runtime" in args.only and not args.random_config:
            make_run(args, RUNTIME_TASK)
            export_onnx(predict_run(args, RUNTIME_TASK))
        return {"part": "setup", "model_path": model_path(args)}
    if kind == "peak":
        record = measure_peak(args)
    elif kind == "train":
        record = measure_training(args, *rest)
    elif kind == "runtime":
        texts = [row["text"] for row in predict_rows(args, task_paths(args, perf_task(args, RUNTIME_TASK)))]
        record = measure_runtime(predict_run(args, RUNTIME_TASK), rest[1], texts, args.batch_sizes, latency)
    elif kind == "ddp":
        record = measure_ddp(args, *rest)
    else:
        record = measure_prediction(args, *rest)
    return {
        **record,
        "shapes": shapes_of(model_path(args)).to_dict(),
        "peak_rss_mb": peak_rss_mb(),
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None,
        "threads": torch.get_num_threads(),
        **environment(),
    }


def record_path(args: argparse.Namespace, job: list[str]) -> Path:
    return args.work / "records" / ("__".join(job) + ".json")


def _dirty() -> bool:
    status = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True)
    return bool(status.stdout.strip())


def describe(args: argparse.Namespace, command: str, started: str, failed: list[str]) -> dict:
    """What the report says about the run as a whole: command, sizes, settings, failures."""
    train, dev, predict = counts(args)
    return {
        "command": command,
        "started": started,
        "finished": datetime.datetime.now().isoformat(timespec="seconds"),
        "model": f"random weights, {args.random_config}" if args.random_config else args.model,
        "train_examples": train,
        "dev_examples": dev,
        "predict_examples": predict,
        "batch_sizes": args.batch_sizes,
        "epochs": EPOCHS,
        "settings": Settings(seed=args.seed).to_dict(),
        "seed": args.seed,
        "scale": args.scale,
        "working_tree_dirty": _dirty(),
        "load_before": args.load_before,
        "load_after": os.getloadavg()[0],  # other work on the machine slows every system alike
        "failed": failed,
    }


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.one:
        write_json_atomic(record_path(args, args.one), run_job(args, args.one))
        return
    command = command_line("bench.perf", argv)
    if {"train", "predict", "runtime"} & set(args.only):  # once, here, so measuring processes only read
        for name in TASK_ORDER:
            task_paths(args, perf_task(args, name))
    shutil.rmtree(args.work / "records", ignore_errors=True)
    logs = args.work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now().isoformat(timespec="seconds")
    args.load_before = os.getloadavg()[0]
    todo, records, failed = jobs(args), [], []
    for number, job in enumerate(todo, start=1):
        label = " / ".join(job)
        print(f"[{number}/{len(todo)}] {label} ...", end=" ", flush=True)
        log = logs / ("__".join(job) + ".log")
        succeeded, seconds = run_child("bench.perf", argv, job, log)
        if not succeeded:
            failed.append(label)
            print(f"FAILED after {seconds:.0f} s; see {log}")
            if job == ["setup"]:
                break
            continue
        print(f"done in {seconds:.0f} s")
        if job != ["setup"]:
            records.append(json.loads(record_path(args, job).read_text(encoding="utf-8")))
    meta = describe(args, command, started, failed)
    if records:
        from bench.perf_report import write_report

        for path in write_report(args.results, records, meta):
            print(f"wrote {path}")
    if failed:
        raise SystemExit(f"bench.perf: {len(failed)} job(s) failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
