"""Train a label-supervised model with the Hugging Face Trainer and write a reloadable run folder."""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed

from lsllm import _compat, processes
from lsllm.adaptation import adapt_with_mntp, mask_token_id
from lsllm.artifacts import CHECKPOINTS, METRICS, TENSORBOARD, TRAINING_LOG, RunFolder
from lsllm.atomic import write_json_atomic, write_text_atomic
from lsllm.checkpoints import ManifestCallback, newest_intact, step_of
from lsllm.config import PREDICT_BATCH_SIZE, TrainConfig
from lsllm.data.collate import Collator
from lsllm.data.encoding import IGNORE_INDEX, Encoder
from lsllm.data.labels import LabelMap
from lsllm.data.prompts import label_words, resolve_template
from lsllm.data.sources import source_name
from lsllm.data.task import TaskData, label_map_for, read_examples, subsample
from lsllm.decision import Decision
from lsllm.errors import LsllmError
from lsllm.inference import Classifier
from lsllm.metrics import (
    LOWER_IS_BETTER,
    label_metrics,
    selection_metric,
    token_metrics,
    tune_offsets,
    tune_thresholds,
)
from lsllm.modeling import quantization
from lsllm.modeling.backbone import load_tokenizer, resolve_model
from lsllm.modeling.head_init import (
    init_head_from_label_words,
    label_word_rows,
    output_embeddings,
    tag_words,
)
from lsllm.modeling.lora import add_lora
from lsllm.modeling.memory import ModelShape, Setup, available_memory, verdict
from lsllm.modeling.model import build_model
from lsllm.modeling.precision import resolve_precision
from lsllm.reports import draw_run

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict


class JsonlLogCallback(TrainerCallback):
    """Append every Trainer log record to a JSON-lines file as it happens, so a crash loses nothing."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero:
            return
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"step": state.global_step, "epoch": state.epoch, **(logs or {})}) + "\n")


def forget_log_after(path: Path, step: int) -> None:
    """Drop the log records of steps a resumed run will train again, so its log reads as one run's."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # the line being written when the process was killed
        if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= step:
            kept.append(line + "\n")
    write_text_atomic(path, "".join(kept))


def tunes_decision(labels: LabelMap, metric: str | None) -> bool:
    """Whether the decision rule is tuned on dev: a multi-label run's thresholds, or a single-label run's
    per-label offsets for --metric macro_f1."""
    return labels.shape == "multi" or (labels.shape == "single" and metric == "macro_f1")


def decision_for(labels: LabelMap, gold, logits, per_label: bool, metric: str | None = None) -> Decision:
    """The decision rule with its thresholds or offsets tuned on dev (see tunes_decision); else the shape's
    fixed rule."""
    if not tunes_decision(labels, metric):
        return Decision.untuned(labels)
    if labels.shape == "multi":
        return Decision("multi", tune_thresholds(gold, logits, per_label))
    return Decision("single", offsets=tune_offsets(gold, logits))


def trainer_metrics(
    task: str, labels: LabelMap, threshold_per_label: bool = False, metric: str | None = None
):
    """The dev-set metric function the Trainer uses to choose the best checkpoint: a checkpoint is scored
    at the thresholds or offsets tuned for it, as the final model will be. bench/'s transformers baselines
    use it too, so every system is scored alike."""
    label_names = labels.names

    def compute(prediction) -> dict:
        gold = prediction.label_ids
        if task != "token":
            decision = decision_for(labels, gold, prediction.predictions, threshold_per_label, metric)
            predicted = decision.decide(prediction.predictions).tolist()
            return label_metrics(labels.shape, gold.tolist(), predicted, label_names, decision.thresholds)
        predicted = prediction.predictions.argmax(-1)
        names = [str(n) for n in label_names]
        keep = gold != IGNORE_INDEX
        gold_tags = [[names[t] for t in row[k]] for row, k in zip(gold, keep, strict=True)]
        predicted_tags = [[names[t] for t in row[k]] for row, k in zip(predicted, keep, strict=True)]
        return token_metrics(gold_tags, predicted_tags)

    def numbers_only(prediction) -> dict:
        return {key: value for key, value in compute(prediction).items() if isinstance(value, float)}

    return numbers_only


def training_arguments(
    config: TrainConfig, run: RunFolder, precision: str, steps_per_epoch: int, shape: str = "single"
) -> TrainingArguments:
    strategy = "steps" if config.eval_steps else "epoch"
    metric = selection_metric(config.task, shape, config.metric)
    return TrainingArguments(
        output_dir=str(run.path / CHECKPOINTS),
        num_train_epochs=config.epochs,
        learning_rate=config.learning_rate,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=PREDICT_BATCH_SIZE,
        gradient_accumulation_steps=config.grad_accum,
        warmup_steps=config.warmup_ratio,
        weight_decay=config.weight_decay,
        eval_strategy=strategy,
        save_strategy=strategy,
        eval_steps=config.eval_steps,
        save_steps=config.eval_steps,
        save_total_limit=config.save_total_limit,
        load_best_model_at_end=True,
        metric_for_best_model=metric,
        greater_is_better=metric not in LOWER_IS_BETTER,
        logging_steps=min(config.logging_steps, max(1, steps_per_epoch)),
        seed=config.seed,
        bf16=precision == "bf16",
        # Without it transformers refuses bf16 on a CPU ("doesn't support bf16/gpu"), bf16 units or not.
        use_cpu=not torch.cuda.is_available(),
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        remove_unused_columns=False,
        label_names=["labels"],
        report_to="wandb" if config.report_to == "wandb" else "none",  # tensorboard: see reporting_callbacks
        run_name=run.path.name,
        dataloader_pin_memory=torch.cuda.is_available(),
        # Every trainable weight (LoRA, head) takes part in every step: DDP need not search for unused ones.
        ddp_find_unused_parameters=False,
    )


def check_reporting(report_to: str) -> None:
    """Before any work: the package --report-to needs (transformers would fail only once training starts)."""
    if report_to != "none" and importlib.util.find_spec(report_to) is None:
        offline = " (and without internet, set WANDB_MODE=offline)" if report_to == "wandb" else ""
        raise LsllmError(
            f"--report-to {report_to} needs the {report_to} package, which is not installed; install it with"
            f" pip install {report_to}{offline}, or leave --report-to out"
        )


def reporting_callbacks(config: TrainConfig, run: RunFolder) -> list[TrainerCallback]:
    """transformers' own TensorBoard callback, writing into the run folder (its default is a dated folder
    under checkpoints/, and TrainingArguments no longer takes a logging dir); in the main process only."""
    if config.report_to != "tensorboard" or not processes.is_main():
        return []
    from torch.utils.tensorboard import SummaryWriter
    from transformers.integrations import TensorBoardCallback

    return [TensorBoardCallback(SummaryWriter(log_dir=str(run.path / TENSORBOARD)))]


def train(config: TrainConfig, resume: bool = False) -> TrainResult:
    """Train on `config.train`, select on `config.dev`, test once on `config.test`, write the run folder.

    Launched in several processes (torchrun, accelerate launch), each trains on its share of every batch,
    only the main process writes, and every process returns the same result.
    """
    config.validate()
    check_reporting(config.report_to)
    processes.check_engine(torch.cuda.is_available(), resolve_precision(config.precision))
    processes.start()
    # On a CPU with bf16 units, auto times bf16 in each process, and processes could time it apart: the
    # main process's choice holds for all.
    precision = processes.on_main(lambda: resolve_precision(config.precision))
    device = training_device()
    quantization.check(config.quantize, device, "training")
    if config.quantize != "none" and precision != "bf16":
        raise LsllmError(f"--quantize {config.quantize} computes in bf16, which {device} does not support")
    if config.quantize != "none" and processes.engine() not in ("single", "ddp"):
        raise LsllmError(
            f"--quantize {config.quantize} trains on one GPU or several with DDP (torchrun); lsllm does not"
            " shard quantised weights with FSDP or DeepSpeed"
        )
    run = RunFolder(Path(config.output))
    run.prepare_for_training(resume)
    processes.wait_for_everyone()  # every process has checked the folder before the main one writes to it
    set_seed(config.seed)

    model_path = resolve_model(config.model)
    tokenizer = load_tokenizer(model_path)
    names = {role: source_name(getattr(config, role), role) for role in ("train", "dev", "test")}
    train_examples = read_examples(config, config.train, name=names["train"])
    train_examples = subsample(train_examples, config.max_train_examples, config.seed)
    labels = label_map_for(config, train_examples)
    config = resolve_template(config, labels.names, tokenizer)
    if labels.shape == "multi":  # found in the data, maybe: the saved config.yaml says so
        config = replace(config, multi_label=True)
        config.validate()  # --metric and the like, now that the data says the run is multi-label
    data = TaskData(config, labels, Encoder.for_config(tokenizer, config))
    train_set = data.encode(train_examples, names["train"])
    dev_examples = subsample(data.read(config.dev, name=names["dev"]), config.max_dev_examples, config.seed)
    dev_set = data.encode(dev_examples, names["dev"])
    check_memory(config, precision, model_path, train_set, len(data.labels))

    weights = None
    if config.class_weights == "auto":
        weights = data.labels.balancing_weights(data.targets(train_examples, names["train"]))
        shown = ", ".join(f"{name}: {w:.3g}" for name, w in zip(data.labels.names, weights, strict=True))
        logger.info("class weights (--class-weights auto): %s", shown)
    # In bf16 the frozen backbone is loaded and kept in bf16 (LoRA and the head stay fp32, under autocast):
    # half the memory from the start, and autocast alone casts every frozen weight again at every call.
    # Training steps on SmolLM2 on an AVX-512 BF16 CPU: 1.85x fp32's speed on SST-2 and 1.78x on
    # CoNLL-2003, against 1.82x and 1.73x for autocast over fp32 weights (bench/results/precision).
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    core = build_model(config, len(data.labels), data.labels.shape, weights, dtype, quantized_on=device)
    # The language-model head's rows, read at most once (from disk when the model does not tie them).
    lm_rows = functools.cache(lambda: output_embeddings(model_path, core.backbone))
    if config.head_init == "label-words":
        if config.task == "token":
            words, distinct = tag_words(data.labels.names, config.label_words), False
        else:
            words, distinct = label_words(data.labels.names, config.label_words, config.chat_template), True
        init_head_from_label_words(core.head, label_word_rows(tokenizer, lm_rows(), words, distinct))
    if config.gradient_checkpointing:
        _compat.enable_gradient_checkpointing(core.backbone)
    model = add_lora(core, config.lora_r, config.lora_alpha, config.lora_dropout, config.lora_targets)
    if processes.is_main():
        run.save_setup(config, data.labels, tokenizer)

    collator = Collator(tokenizer.pad_token_id, tokenizer.padding_side, config.task == "token")
    checkpoint = resume_point(run) if resume else None
    if config.mntp_steps and checkpoint is None:  # a checkpoint's LoRA weights have been through it
        if config.quantize == "none":  # MNTP runs before the Trainer places the model (quantised: placed)
            model.to(device)
        log = run.path / TRAINING_LOG if processes.is_main() else None
        adapt_with_mntp(
            model, lm_rows(), train_set, collator, config, mask_token_id(tokenizer), log, precision == "bf16"
        )

    global_batch = config.batch_size * config.grad_accum * processes.world_size()
    trainer = Trainer(
        model=model,
        args=training_arguments(
            config,
            run,
            precision,
            steps_per_epoch=-(-len(train_set) // global_batch),
            shape=data.labels.shape,
        ),
        train_dataset=train_set,
        eval_dataset=dev_set,
        data_collator=collator,
        compute_metrics=trainer_metrics(config.task, data.labels, config.threshold_per_label, config.metric),
        callbacks=[
            JsonlLogCallback(run.path / TRAINING_LOG),
            ManifestCallback(),
            *reporting_callbacks(config, run),
        ],
    )
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    # Every process takes part in saving: FSDP and ZeRO-3 gather the shards of the adapter and the head.
    run.save_weights(trainer.save_model, keep=processes.is_main())
    best_checkpoint = trainer.state.best_model_checkpoint
    del trainer, model
    metrics = processes.on_main(lambda: score(run, config, data, dev_examples, best_checkpoint))
    return TrainResult(run.path, metrics)


def training_device() -> torch.device:
    """This process's device: its GPU (the launcher's process group has chosen it), or the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def check_memory(config: TrainConfig, precision: str, model_path: str, train_set, num_labels: int) -> None:
    """Log the memory each process will need, estimated before the model is loaded, and warn, naming what
    would make it fit, when this machine has less."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    setup = Setup.for_run(
        config,
        precision,
        length=max((len(feature["input_ids"]) for feature in train_set), default=1),
        num_labels=num_labels,
        processes=processes.world_size(),
        engine=processes.engine(),
        device=device,
    )
    shape = ModelShape.from_pretrained(model_path, config.trust_remote_code)
    planned, warning = verdict(shape, setup, available_memory(device, processes.local_world_size()))
    logger.info("memory: about %s per process", planned.describe())
    if warning:
        logger.warning(warning)


def resume_point(run: RunFolder) -> Path | None:
    """The newest intact checkpoint, the same in every process; the main process removes damaged ones
    first, and forgets the log records of the steps that will be trained again."""
    with processes.main_first():
        checkpoint = newest_intact(run.path / CHECKPOINTS)
    if processes.is_main():
        if checkpoint is None:
            logger.warning(
                "no intact checkpoint in %s to resume from; training from the start", run.path / CHECKPOINTS
            )
        # from the start, MNTP's records too: it runs again
        forget_log_after(run.path / TRAINING_LOG, step_of(checkpoint) if checkpoint else -1)
    return checkpoint


def score(run: RunFolder, config: TrainConfig, data: TaskData, dev_examples: list, best_checkpoint) -> dict:
    """The final dev and test metrics, written to metrics.json, after a multi-label run's thresholds are
    tuned on dev. Scored as `lsllm eval` scores the saved run, in the same number format, so the two always
    agree; in the main process only."""
    _compat.forget_deepspeed_zero3()  # else this process alone would wait to load its share of a ZeRO-3 model
    classifier = Classifier.load(run.path, precision=config.precision, decision=Decision.untuned(data.labels))
    classifier.data = data  # the same options and tokenizer; its encoder has reported dev's long inputs
    dev_name = source_name(config.dev, "dev")
    if tunes_decision(data.labels, config.metric):  # tuned on the saved model's dev outputs
        dev_logits = torch.stack(classifier.logits(data.encode(dev_examples, dev_name, with_labels=False)))
        gold = data.targets(dev_examples, dev_name)
        classifier.decision = decision_for(
            data.labels, gold, dev_logits, config.threshold_per_label, config.metric
        )
        if classifier.decision.offsets is not None:
            run.save_offsets(data.labels, classifier.decision.offsets)
        else:
            run.save_thresholds(data.labels, classifier.decision.thresholds, config.threshold_per_label)
    outcomes = {"dev": classifier.outcomes(dev_examples, dev_name)}
    if config.test not in (None, ""):
        test_name = source_name(config.test, "test")
        outcomes["test"] = classifier.outcomes(data.read(config.test, name=test_name), test_name)
    metrics = {split: classifier.scores(*pair) for split, pair in outcomes.items()}
    metrics["best_checkpoint"] = best_checkpoint
    write_json_atomic(run.path / METRICS, metrics)
    shown = "test" if "test" in outcomes else "dev"  # the pictures show the test set when there is one
    title = f"{shown}: {Path(source_name(getattr(config, shown), shown)).name}"
    metric = selection_metric(config.task, data.labels.shape, config.metric)
    draw_run(run.path, run.path / TRAINING_LOG, metric, metrics[shown], outcomes[shown], title)
    return metrics
