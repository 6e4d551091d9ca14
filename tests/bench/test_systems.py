"""The accuracy benchmark's prompt system gives lsllm valid options for every sequence task."""

from __future__ import annotations

import pytest

from bench.datasets import TASKS
from bench.instruct import chat_prompt
from bench.systems import instruction_prompt
from lsllm.config import TrainConfig
from lsllm.data.prompts import Prompt, resolve_template
from tests.tiny import byte_level_tokenizer

SEQUENCE_TASKS = [name for name, task in TASKS.items() if task.kind == "sequence"]


@pytest.mark.parametrize("name", SEQUENCE_TASKS)
def test_lsllm_reads_the_instruction_tuning_systems_own_prompt(name):
    task = TASKS[name]
    options = instruction_prompt(task)
    config = TrainConfig(model="m", task="sequence", train="t", dev="d", output="o", **options)
    tokenizer = byte_level_tokenizer()
    tokenizer.chat_template = (
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}<assistant>"
    )
    labels = list(task.label_words)  # the run's label order (bench.common.task_labels)
    written = resolve_template(config.validate(), labels, tokenizer)
    filled = Prompt(written.template, written.chat_template, tokenizer).format("a tweet", None)
    words = [task.label_words[label] for label in labels]  # as the instruction-tuning system names them
    assert filled == chat_prompt(tokenizer, task, words, "a tweet")
    assert filled.startswith(f"<user>{task.description} Answer with one of: ")
    assert filled.endswith("\n\na tweet<assistant>")


@pytest.mark.parametrize("seconds, stops", [(0.0, True), (3600.0, False)])
def test_equal_time_training_stops_after_its_budget_with_a_last_evaluation(seconds, stops):
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from bench.instruct import StopAfter

    callback, control = StopAfter(seconds), TrainerControl()
    args, state = TrainingArguments(output_dir="unused", report_to="none"), TrainerState()
    callback.on_train_begin(args, state, control)
    callback.on_step_end(args, state, control)
    assert (control.should_training_stop, control.should_evaluate, control.should_save) == (stops,) * 3


@pytest.fixture
def trained_config(tmp_path, monkeypatch):
    """The lsllm configuration a bench system trains with, captured where training would start."""
    import lsllm.training
    from bench.common import Settings
    from bench.systems import SYSTEMS

    trained = []

    def capture(config):
        trained.append(config)
        raise InterruptedError

    monkeypatch.setattr(lsllm.training, "train", capture)
    paths = {split: tmp_path / f"{split}.jsonl" for split in ("train", "selection", "evaluation")}

    def run(system: str, task, labels=("0", "1"), seed: int = 0):
        with pytest.raises(InterruptedError):
            SYSTEMS[system].run(task, paths, list(labels), Settings(seed=seed), tmp_path / system)
        return trained[-1]

    return run


@pytest.mark.parametrize(
    "task, base, variant, changed",
    [
        ("sst2", "ls-llama", "ls-llama-head-bias", {"head_bias": (False, True)}),
        ("twitter_fin", "ls-llama-auto", "ls-llama-auto-balanced", {"class_weights": ("none", "auto")}),
        ("conll2003", "ls-unllama", "ls-unllama-mntp", {"mntp_steps": (0, 100)}),
        ("conll2003", "ls-unllama", "ls-unllama-longer", {"epochs": (2.0, 4.0)}),
        ("sst5", "lsllm-defaults-equal-steps", "lsllm-defaults", {"epochs": (2.0, 3.0)}),
    ],
)
def test_each_ablation_differs_from_its_base_system_in_its_one_option(
    trained_config, task, base, variant, changed
):
    first, second = (trained_config(name, TASKS[task]).to_dict() for name in (base, variant))
    differing = {key for key, value in first.items() if second[key] != value}
    assert differing == {*changed, "output"}
    assert {key: (first[key], second[key]) for key in changed} == changed


def test_a_longer_budget_reaches_lsllm_and_the_transformers_recipe_alike(tmp_path, trained_config):
    from bench.accuracy import budgeted
    from bench.common import Settings
    from bench.recipe import training_arguments

    task = budgeted(TASKS["conll2003"], 4.0)
    config = trained_config("ls-llama", task, labels=("O", "B-PER"))
    arguments = training_arguments(task, Settings(), tmp_path, 5e-4, "f1")
    assert (config.epochs, arguments.num_train_epochs) == (4.0, 4.0)
    assert TASKS["conll2003"].budget.epochs == 2 and budgeted(task, None) is task


@pytest.mark.parametrize(
    "task, template, instruction, metric",
    [
        ("sst2", "auto", TASKS["sst2"].description, None),
        ("twitter_fin", "auto", TASKS["twitter_fin"].description, "macro_f1"),
        ("conll2003", None, None, None),
    ],
)
def test_the_defaults_system_trains_with_what_a_user_gets_by_leaving_options_out(
    trained_config, task, template, instruction, metric
):
    config = trained_config("lsllm-defaults", TASKS[task], seed=2)
    preset = {"preset": "prompt"} if TASKS[task].kind == "sequence" else {}  # what the README leads with
    default = TrainConfig.from_dict({"model": "m", "task": TASKS[task].kind, **preset})
    assert (config.epochs, config.learning_rate, config.batch_size) == (
        default.epochs,
        default.learning_rate,
        default.batch_size,
    )
    assert (config.template, config.seed, config.attention) == (template, 2, default.attention)
    assert config.instruction == instruction
    assert config.metric == metric  # what the README says to add where macro-F1 is the score
