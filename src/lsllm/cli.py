"""The `lsllm` command: train, eval and predict, with one-line errors instead of stack traces."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import logging
import re
import sys
from pathlib import Path

from lsllm import processes
from lsllm.atomic import write_json_atomic
from lsllm.config import (
    EXPORT_FORMATS,
    PREDICT_BATCH_SIZE,
    PREDICT_PRECISIONS,
    PRESETS,
    RUNTIMES,
    TrainConfig,
    flag,
    presets_help,
    read_yaml,
)
from lsllm.errors import LsllmError
from lsllm.modeling.memory import ENGINES
from lsllm.serving.options import ServeOptions, bind

DESCRIPTION = """Label-supervised fine-tuning of decoder LLMs: a linear head on the final hidden states,
LoRA on the backbone, cross-entropy on your labels. Causal attention (LS-LLaMA) or bidirectional
(LS-unLLaMA), for text classification (--task sequence: one label per text, or several with
--multi-label), numbers (--task regression) or word tagging such as NER (--task token)."""

TRAIN_EXAMPLE = """example:
  lsllm train --model smollm2-135m --task token --train train.txt --dev valid.txt --test test.txt \\
      --output runs/ner --attention bidirectional --epochs 1
  Values can also come from --config run.yaml (keys are the flag names); flags override the file."""

PREDICT_NOTES = """long inputs:
  A sequence run keeps the first --max-length tokens the run was trained with (of a text pair, the
  longer text loses its end first), and such a row says "truncated": true. A token run tags every word
  of an input of any length, in windows of --max-length tokens that overlap by a quarter; each word is
  tagged by the window where it has the most context.
raw text (token runs):
  Split into words as CoNLL data is: letters and digits, keeping inner . - ' ("U.S.", "well-known",
  "O'Neil"); each punctuation mark or symbol is a word; "'s" is split off. Entities carry start_char
  and end_char, which slice the original text."""


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field; defaults are left unset so we can tell what the user gave."""
    for f in dataclasses.fields(TrainConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        text = f.metadata["help"]  # a help text that explains its own default keeps it
        text += "" if "default:" in text else f" (default: {default})"
        options = {"help": text, "default": None, "dest": f.name}
        if "choices" in f.metadata:
            options["choices"] = f.metadata["choices"]
        kind = str(f.type)
        if kind.split(" |")[0] == "bool":
            options["action"] = argparse.BooleanOptionalAction
        elif kind.startswith("list"):
            options.update(action="extend", nargs="+", metavar="NAME")
        else:
            options["type"] = {"int": int, "float": float}.get(kind.split(" |")[0], str)
        parser.add_argument(f"--{flag(f.name)}", **options)


def add_runtime_flags(parser: argparse.ArgumentParser) -> None:
    """How a loaded model runs: its number format and what computes it."""
    parser.add_argument(
        "--precision",
        choices=PREDICT_PRECISIONS,
        default="auto",
        help="number format of the backbone: auto (bf16 where the device runs it fast, else fp32, as in"
        " training), fp32, bf16, or int8 (CPU only: int8 weights, about 1.6x faster for single texts,"
        " scores move a little; check with lsllm eval) (default: auto)",
    )
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        help="what runs the model: torch, or onnx (onnxruntime on the CPU, fp32 or with --precision int8"
        " the export's int8 graph, for an export written with 'lsllm export --format onnx'; needs"
        " lsllm[onnx]) (default: onnx for an ONNX export, torch otherwise)",
    )


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """The options of every command that loads a run to predict with it."""
    parser.add_argument(
        "--batch-size",
        type=int,
        default=PREDICT_BATCH_SIZE,
        help=f"examples per batch (default: {PREDICT_BATCH_SIZE})",
    )
    add_runtime_flags(parser)


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line that points to --help, like every other lsllm error."""

    def error(self, message: str) -> None:
        self.exit(2, f"lsllm: error: {message}; see '{self.prog} --help'\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="lsllm", description=DESCRIPTION)
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=OneLineErrorParser
    )

    train = commands.add_parser(
        "train",
        help="fine-tune a model and write a run folder",
        description=DESCRIPTION,
        epilog=TRAIN_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("--config", help="YAML file of options (keys as the flag names); flags override it")
    train.add_argument(
        "--preset",
        choices=list(PRESETS),
        help=presets_help(),
    )
    train.add_argument(
        "--resume", action="store_true", help="continue the run in --output from its last checkpoint"
    )
    add_config_flags(train)

    plan = commands.add_parser(
        "plan",
        help="estimate the memory a training run needs, without loading the model",
        description="Estimate the peak memory of each training process from the model's config and the"
        " run's options (the same estimate 'lsllm train' logs before it starts), and say what would make"
        " it fit when it does not. Takes the options of 'lsllm train'; a batch is counted at --max-length.",
    )
    plan.add_argument("--config", help="YAML file of options (keys as the flag names); flags override it")
    plan.add_argument("--preset", choices=list(PRESETS), help="named settings, as for 'lsllm train'")
    add_config_flags(plan)
    plan.add_argument("--processes", type=int, default=1, help="training processes, one per GPU (default: 1)")
    plan.add_argument(
        "--engine",
        choices=ENGINES[1:],
        help="how the processes share the work: ddp (whole copies), fsdp, zero2 or zero3 (DeepSpeed)"
        " (default: ddp)",
    )
    plan.add_argument(
        "--device", choices=("cpu", "cuda"), help="plan for a CPU or a GPU (default: this machine's)"
    )
    plan.add_argument(
        "--memory-gib",
        type=float,
        help="memory each process may use (default: the free memory of this machine's GPU, or each"
        " process's share of its available RAM)",
    )

    evaluate = commands.add_parser("eval", help="score a run on a labelled file and write the metrics")
    evaluate.add_argument("run", help="run folder written by 'lsllm train', or an 'lsllm export' folder")
    evaluate.add_argument(
        "--data",
        required=True,
        help="labelled data in the run's format: a file, a datasets save_to_disk folder, or a Hugging Face"
        " dataset as NAME:SPLIT or NAME:CONFIG:SPLIT (FOLDER:SPLIT for a saved DatasetDict)",
    )
    evaluate.add_argument("--output", help="metrics JSON to write (default: RUN/eval-<data name>.json)")
    add_model_flags(evaluate)

    predict = commands.add_parser(
        "predict",
        help="predict labels (or tags and entities) for new text",
        epilog=PREDICT_NOTES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    predict.add_argument("run", help="run folder written by 'lsllm train', or an 'lsllm export' folder")
    predict.add_argument("text", nargs="?", help="one text to predict (printed as JSON); or use --input")
    predict.add_argument(
        "--input",
        help="inputs: a file or dataset (as eval's --data) of rows with the text field(s), or of"
        " {'tokens': [...]}",
    )
    predict.add_argument("--output", help="JSON-lines file to write (default: print to the terminal)")
    predict.add_argument(
        "--top-k",
        type=int,
        metavar="K",
        help='sequence runs: add the K likeliest labels to each row as "top", best first',
    )
    predict.add_argument(
        "--min-score",
        type=float,
        metavar="P",
        help="token runs: leave out the entities whose score (the mean of their words' tag probabilities)"
        " is below P, from 0 to 1; tags and word scores stay as predicted",
    )
    predict.add_argument(
        "--text-field",
        action="extend",
        nargs="+",
        metavar="NAME",
        help="text column(s) of --input, if not the ones the run was trained with",
    )
    add_model_flags(predict)

    serve = commands.add_parser(
        "serve",
        help="answer predictions over HTTP (JSON API, docs at /docs)",
        description="Serve a model over HTTP: POST /predict, GET /health, GET /labels, docs at /docs."
        " Concurrent requests are merged into shared prediction batches. SIGTERM or Ctrl+C stops it"
        " after the requests in flight are answered.",
    )
    serve.add_argument("run", metavar="RUN_OR_EXPORT", help="run folder of 'lsllm train', or an export")
    add_runtime_flags(serve)
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this machine only); 0.0.0.0 exposes the service,"
        " which has no authentication, to every network the machine is on",
    )
    serve.add_argument("--port", type=int, default=8000, help="port; 0 picks a free one (default: 8000)")
    for f in dataclasses.fields(ServeOptions):
        serve.add_argument(
            f"--{flag(f.name)}",
            type=type(f.default),
            default=f.default,
            help=f"{f.metadata['help']} (default: %(default)s)",
        )

    export = commands.add_parser(
        "export",
        help="write a run as one folder that other serving stacks load",
        description="Write a run as one self-contained folder, with the tokenizer, the run's config.yaml and"
        " labels.json (so 'lsllm predict/eval' and lsllm.load read it like the run) and a model card."
        " --format lsllm (default): lsllm's model type, for any run: plain transformers loads it"
        " (AutoModelFor*Classification, pipeline) once lsllm is imported, with no trust_remote_code."
        " --format transformers: transformers' own class (e.g. LlamaForSequenceClassification), which"
        " loads with no lsllm installed; for runs it can express (last-token pooling and a head without a"
        " bias for sequences), others are refused with the reason. --format onnx: an ONNX graph (any run),"
        " which onnxruntime runs without torch and 'lsllm predict/eval/serve' with --runtime onnx (needs"
        " lsllm[onnx]).",
    )
    export.add_argument("run", help="run folder written by 'lsllm train'")
    export.add_argument(
        "--output", required=True, metavar="DIR", help="folder to write (an earlier export there is replaced)"
    )
    export.add_argument(
        "--format",
        choices=EXPORT_FORMATS,
        default="lsllm",
        help="lsllm (any run; loads in transformers once lsllm is imported), transformers (the stock"
        " class, loads without lsllm) or onnx (any run; onnxruntime, without torch) (default: lsllm)",
    )
    export.add_argument(
        "--int8",
        action="store_true",
        help="--format onnx: also write model.int8.onnx, the graph with onnxruntime's int8 weights (the MLP's"
        " down projection and the head stay fp32), which 'lsllm predict/eval/serve --precision int8' run:"
        " faster on a CPU, scores move a little",
    )
    export.add_argument(
        "--merge",
        action="store_true",
        help="--format lsllm: fold LoRA into the backbone's weights: loads without peft and predicts a little"
        " faster in plain transformers (default: keep the LoRA weights apart, exactly as trained); the"
        " other formats always fold it in",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Dataclass defaults, then the preset, then the YAML file, then the flags the user actually gave."""
    values = read_yaml(args.config) if args.config else {}
    if args.preset:
        values["preset"] = args.preset
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    values.update({name: value for name, value in given.items() if value is not None})
    return TrainConfig.from_dict(values)


def run_train(args: argparse.Namespace) -> None:
    from lsllm.metrics import format_metrics
    from lsllm.training import train

    result = train(config_from_args(args), resume=args.resume)
    processes.finish()
    if processes.is_main():
        print(format_metrics({k: v for k, v in result.metrics.items() if k in ("dev", "test")}))
        print(f"run saved to {result.run_dir}")


def run_plan(args: argparse.Namespace) -> None:
    import torch

    from lsllm.modeling import memory
    from lsllm.modeling.backbone import resolve_model

    config = config_from_args(args)
    if config.task is None:  # the head is all that depends on it, and it is small either way
        config = dataclasses.replace(config, task="sequence")
    config.validate(required=("model",))
    if args.processes < 1:
        raise LsllmError(f"--processes must be at least 1, not {args.processes}")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    engine = (args.engine or "ddp") if args.processes > 1 else "single"
    setup = memory.Setup.for_run(
        config,
        memory.planned_precision(config.precision, device),
        length=config.max_length,
        num_labels=len(config.labels or ()) or 2,
        processes=args.processes,
        engine=engine,
        device=device,
    )
    shape = memory.ModelShape.from_pretrained(resolve_model(config.model), config.trust_remote_code)
    if args.memory_gib is not None:
        available = args.memory_gib * memory.GiB
    elif device == "cuda" and not torch.cuda.is_available():
        raise LsllmError("this machine has no GPU to measure; give the memory of yours with --memory-gib")
    else:
        available = memory.available_memory(device, args.processes)
    planned, warning = memory.verdict(shape, setup, available)
    print(memory.format_plan(shape, setup, planned, available, warning))


def data_stem(data: str) -> str:
    """A file name part for a data file or dataset: its name without extension, split and all ("test" for
    test.jsonl, "conll2003-test" for org/conll2003:test)."""
    return re.sub(r"[^\w.-]+", "-", Path(data).stem).strip("-.") or "data"


def run_eval(args: argparse.Namespace) -> None:
    from lsllm.inference import Classifier
    from lsllm.metrics import format_metrics
    from lsllm.reports import draw_scores

    classifier = Classifier.load(args.run, precision=args.precision, runtime=args.runtime)
    examples = classifier.data.read(args.data)
    outcomes = classifier.outcomes(examples, args.data, batch_size=args.batch_size, progress=True)
    metrics = classifier.scores(*outcomes)
    output = Path(args.output) if args.output else Path(args.run) / f"eval-{data_stem(args.data)}.json"
    write_json_atomic(output, {"data": args.data, **metrics})
    title = f"{Path(args.data).name}: {Path(args.run).name}"
    pictures = draw_scores(metrics, output.parent, f"{output.stem}-", title, outcomes)
    print(format_metrics(metrics))
    print(f"metrics written to {output}" + "".join(f", picture to {picture}" for picture in pictures))


def run_predict(args: argparse.Namespace) -> None:
    from lsllm.atomic import write_jsonl_atomic
    from lsllm.data.inputs import read_prediction_inputs
    from lsllm.inference import Classifier

    if (args.text is None) == (args.input is None):
        raise LsllmError("give either a text or --input FILE to 'lsllm predict'")
    classifier = Classifier.load(args.run, precision=args.precision, runtime=args.runtime)
    if args.text_field:
        classifier.data.config = dataclasses.replace(classifier.data.config, text_field=args.text_field)
    inputs = [args.text] if args.text is not None else read_prediction_inputs(classifier.data, args.input)
    rows = classifier.predict(
        inputs,
        batch_size=args.batch_size,
        progress=args.input is not None,
        source=args.input or "the text",
        top_k=args.top_k,
        min_score=args.min_score,
    )
    if args.output:
        write_jsonl_atomic(Path(args.output), rows)
        print(f"{len(rows)} predictions written to {args.output}")
    else:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))


def run_serve(args: argparse.Namespace) -> None:
    missing = [name for name in ("fastapi", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        raise LsllmError(
            f"lsllm serve needs {' and '.join(missing)}, which a plain install leaves out; install them"
            " with: pip install 'lsllm[serve]'"
        )
    from lsllm.inference import Classifier
    from lsllm.serving.server import serve

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(ServeOptions)}
    options = ServeOptions(**values).check()
    sock = bind(args.host, args.port)  # before loading, so a busy port fails fast
    classifier = Classifier.load(args.run, precision=args.precision, runtime=args.runtime)

    def tell(url: str) -> None:
        print(f"serving {args.run} at {url} (API docs: {url}/docs); Ctrl+C stops", flush=True)

    answered_all = serve(classifier, sock, options, tell)
    print("stopped after answering every request" if answered_all else "stopped", flush=True)


def run_export(args: argparse.Namespace) -> None:
    from lsllm.export import export_run

    exported = export_run(args.run, args.output, merge=args.merge, format=args.format, int8=args.int8)
    merged = "merged" if args.merge or args.format != "lsllm" else "unmerged"
    print(f"{merged} {args.format} export written to {exported.path}")
    for note in exported.notes:
        print(f"note: {note}")


# Flags whose values may start with a dash (a slice such as -4:), which argparse would take for a flag.
DASH_VALUED = ("--bidirectional-layers",)


def join_dash_values(argv: list[str]) -> list[str]:
    """`--bidirectional-layers -4:` as `--bidirectional-layers=-4:`, so both spellings work."""
    joined: list[str] = []
    for arg in argv:
        if joined and joined[-1] in DASH_VALUED and arg.startswith("-") and ":" in arg:
            joined[-1] = f"{joined[-1]}={arg}"
        else:
            joined.append(arg)
    return joined


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(format="lsllm: %(levelname)s: %(message)s", level=logging.WARNING)
    # Processes of a multi-process launch other than the main one would repeat its every message.
    logging.getLogger("lsllm").setLevel(logging.INFO if processes.is_main() else logging.ERROR)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # weight-loading bars would break one-line errors
    args = build_parser().parse_args(join_dash_values(sys.argv[1:] if argv is None else argv))
    commands = {
        "train": run_train,
        "plan": run_plan,
        "eval": run_eval,
        "predict": run_predict,
        "serve": run_serve,
        "export": run_export,
    }
    try:
        commands[args.command](args)
    except LsllmError as error:
        print(f"lsllm: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = "; a training run can continue with 'lsllm train --resume'" if args.command == "train" else ""
        print(f"lsllm: interrupted{hint}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
