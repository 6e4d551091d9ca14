"""The accuracy benchmark's prompt system gives lsllm valid options for every sequence task."""

from __future__ import annotations

import pytest

from bench.datasets import TASKS
from bench.systems import instruction_prompt
from lsllm.config import TrainConfig
from lsllm.data.prompts import Prompt
from tests.tiny import byte_level_tokenizer

SEQUENCE_TASKS = [name for name, task in TASKS.items() if task.kind == "sequence"]


@pytest.mark.parametrize("name", SEQUENCE_TASKS)
def test_the_instruction_prompt_is_a_valid_lsllm_prompt_naming_every_answer_word(name):
    task = TASKS[name]
    options = instruction_prompt(task)
    TrainConfig(model="m", task="sequence", train="t", dev="d", output="o", **options).validate()
    tokenizer = byte_level_tokenizer()
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    filled = Prompt(options["template"], chat=True, tokenizer=tokenizer).format("a tweet", None)
    assert filled.startswith(task.description) and filled.endswith("\n\na tweet")
    assert all(word in filled for word in task.label_words.values())
    assert {entry.split("=")[0] for entry in options["label_words"]} == set(task.label_words)


@pytest.mark.parametrize("seconds, stops", [(0.0, True), (3600.0, False)])
def test_equal_time_training_stops_after_its_budget_with_a_last_evaluation(seconds, stops):
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from bench.instruct import StopAfter

    callback, control = StopAfter(seconds), TrainerControl()
    args, state = TrainingArguments(output_dir="unused", report_to="none"), TrainerState()
    callback.on_train_begin(args, state, control)
    callback.on_step_end(args, state, control)
    assert (control.should_training_stop, control.should_evaluate, control.should_save) == (stops,) * 3


def test_the_head_bias_ablation_differs_from_ls_llama_in_the_head_bias_only(tmp_path, monkeypatch):
    import lsllm.training
    from bench.common import Settings
    from bench.systems import SYSTEMS

    trained = []

    def capture(config):  # the configuration each system trains with; no training needed
        trained.append(config)
        raise InterruptedError

    monkeypatch.setattr(lsllm.training, "train", capture)
    paths = {split: tmp_path / f"{split}.jsonl" for split in ("train", "selection", "evaluation")}
    for name in ("ls-llama", "ls-llama-head-bias"):
        with pytest.raises(InterruptedError):
            SYSTEMS[name].run(TASKS["sst2"], paths, ["0", "1"], Settings(), tmp_path / name)
    plain, biased = trained
    assert (plain.head_bias, biased.head_bias) == (False, True)
    differing = {key for key, value in plain.to_dict().items() if biased.to_dict()[key] != value}
    assert differing == {"head_bias", "output"}
