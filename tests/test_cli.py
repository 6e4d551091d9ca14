"""The `lsllm` command end to end, and the one-line errors it gives for bad input."""

import json
import re
import subprocess
import sys

import pytest
import yaml

from lsllm.cli import main
from tests.helpers import ner_rows, sentiment_rows, write_jsonl, write_splits

FP32 = ["--precision", "fp32"]  # every number compared here is an fp32 one, whatever the CPU
TINY_TRAINING = [
    "--precision",
    "fp32",
    "--epochs",
    "2",
    "--batch-size",
    "8",
    "--learning-rate",
    "3e-3",
    "--max-length",
    "64",
]


def lsllm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lsllm.cli", *args], capture_output=True, text=True)


def train_args(model, task: str, files: dict, output, *extra: str) -> list[str]:
    """`lsllm train` arguments for a model, a task and a dict of split files."""
    args = ["train", "--model", str(model), "--task", task, "--output", str(output)]
    for split, path in files.items():
        args += [f"--{split}", str(path)]
    return [*args, *extra]


@pytest.fixture(scope="module")
def cli_runs(tiny_model, tmp_path_factory):
    """One sequence and one token run trained through the command line (YAML config plus flags)."""
    root = tmp_path_factory.mktemp("cli")
    seq = write_splits(root, sentiment_rows, {"train": 32, "dev": 12, "test": 12}, prefix="seq-")
    tok = write_splits(root, ner_rows, {"train": 32, "dev": 12}, prefix="tok-")
    config = root / "seq.yaml"
    options = {
        "model": str(tiny_model),
        "task": "sequence",
        "pooling": "mean",
        "epochs": 99,
        "train": str(seq["train"]),
    }
    config.write_text(yaml.safe_dump(options))
    dev_and_test = ["--dev", str(seq["dev"]), "--test", str(seq["test"])]
    assert (
        main(
            [
                "train",
                "--config",
                str(config),
                *dev_and_test,
                "--output",
                str(root / "seq-run"),
                *TINY_TRAINING,
            ]
        )
        == 0
    )
    assert main(train_args(tiny_model, "token", tok, root / "tok-run", *TINY_TRAINING)) == 0
    return root, seq, tok


def test_train_flags_override_the_yaml_config(cli_runs):
    root, _, _ = cli_runs
    saved = yaml.safe_load((root / "seq-run" / "config.yaml").read_text())
    assert saved["epochs"] == 2.0 and saved["pooling"] == "mean" and saved["attention"] == "causal"
    assert yaml.safe_load((root / "tok-run" / "config.yaml").read_text())["attention"] == "bidirectional"


def test_train_prints_the_metrics_table(cli_runs, capsys, tiny_model, sentiment_files, tmp_path):
    files = {"train": sentiment_files["train"], "dev": sentiment_files["dev"]}
    assert main(train_args(tiny_model, "sequence", files, tmp_path / "r", "--epochs", "1", *FP32)) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "macro-F1" in out and f"run saved to {tmp_path / 'r'}" in out


def test_eval_prints_and_writes_metrics(cli_runs, capsys):
    root, seq, _ = cli_runs
    assert main(["eval", str(root / "seq-run"), "--data", str(seq["test"]), *FP32]) == 0
    out = capsys.readouterr().out
    written = json.loads((root / "seq-run" / "eval-seq-test.json").read_text())
    assert f"{100 * written['accuracy']:.1f}" in out
    assert (
        written["accuracy"] == json.loads((root / "seq-run" / "metrics.json").read_text())["test"]["accuracy"]
    )
    picture = root / "seq-run" / "eval-seq-test-confusion_matrix.png"
    assert f"picture to {picture}" in out and picture.read_bytes()[:4] == b"\x89PNG"


def test_predict_a_file_of_texts(cli_runs):
    root, seq, _ = cli_runs
    out = root / "pred.jsonl"
    assert (
        main(["predict", str(root / "seq-run"), "--input", str(seq["test"]), "--output", str(out), *FP32])
        == 0
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 12
    for row in rows:
        assert row["label"] in ("neg", "pos") and set(row["probs"]) == {"neg", "pos"}
        assert row["score"] == max(row["probs"].values()) and sum(row["probs"].values()) == pytest.approx(1)


def test_predict_one_text_prints_json(cli_runs):
    root, _, _ = cli_runs
    result = lsllm("predict", str(root / "seq-run"), "the film was good", *FP32)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["label"] in ("neg", "pos")


def test_predict_tokens_from_words_and_raw_text(cli_runs, tmp_path):
    root, _, _ = cli_runs
    source = write_jsonl(
        tmp_path / "in.jsonl",
        [{"tokens": ["Mary", "Jones", "visited", "Berlin"]}, {"text": "John  Smith went to New York"}],
    )
    out = tmp_path / "out.jsonl"
    assert main(["predict", str(root / "tok-run"), "--input", str(source), "--output", str(out), *FP32]) == 0
    words, text = [json.loads(line) for line in out.read_text().splitlines()]
    assert words["tokens"] == ["Mary", "Jones", "visited", "Berlin"] and len(words["tags"]) == 4
    assert "start_char" not in json.dumps(words["entities"])
    assert text["tokens"] == ["John", "Smith", "went", "to", "New", "York"]
    for entity in text["entities"]:
        assert (
            "John  Smith went to New York"[entity["start_char"] : entity["end_char"]].split()
            == text["tokens"][entity["start"] : entity["end"]]
        )


def test_predict_min_score_leaves_out_weaker_entities(cli_runs, capsys):
    run, words = str(cli_runs[0] / "tok-run"), "John Smith visited New York and Mary Jones"
    assert main(["predict", run, words, *FP32]) == 0
    full = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    scores = sorted(entity["score"] for entity in full["entities"])
    assert len(scores) >= 2 and scores[0] < scores[-1]
    assert main(["predict", run, words, "--min-score", str(scores[-1]), *FP32]) == 0
    kept = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert kept["entities"] == [e for e in full["entities"] if e["score"] >= scores[-1]]
    assert kept["tags"] == full["tags"]
    assert main(["predict", str(cli_runs[0] / "seq-run"), "a film", "--min-score", "0.5"]) == 2
    assert "min_score applies to token runs only" in capsys.readouterr().err


def test_a_saved_datasetdict_trains_evaluates_and_predicts_by_split(tiny_model, tmp_path, capsys):
    """CoNLL-2003 as the hub holds it (tags as ClassLabel ids in ner_tags), saved with save_to_disk, named
    FOLDER:SPLIT in a YAML config and on the command line."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value

    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    features = Features({"tokens": List(Value("string")), "ner_tags": List(ClassLabel(names=tags))})

    def split(n: int, seed: int) -> Dataset:
        rows = [{"tokens": r["tokens"], "ner_tags": r["tags"]} for r in ner_rows(n, seed)]
        return Dataset.from_list(rows, features=features)

    folder = tmp_path / "conll"
    DatasetDict(train=split(32, 1), validation=split(12, 2), test=split(12, 3)).save_to_disk(folder)
    config = tmp_path / "ner.yaml"
    config.write_text(yaml.safe_dump({"train": f"{folder}:train", "tags_field": "ner_tags"}))
    run = tmp_path / "run"
    args = ["train", "--config", str(config), "--dev", f"{folder}:validation", "--test", f"{folder}:test"]
    options = ["--model", str(tiny_model), "--task", "token", "--output", str(run), *TINY_TRAINING]
    assert main([*args, *options]) == 0
    assert sorted(json.loads((run / "labels.json").read_text())["names"]) == sorted(tags)
    assert main(["eval", str(run), "--data", f"{folder}:test", *FP32]) == 0
    written = json.loads((run / "eval-conll-test.json").read_text())
    assert (run / "eval-conll-test-per_type_f1.png").exists() and (run / "per_type_f1.png").exists()
    assert written["f1"] == json.loads((run / "metrics.json").read_text())["test"]["f1"]
    capsys.readouterr()
    assert main(["predict", str(run), "--input", f"{folder}:test", *FP32]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [row["tokens"] for row in rows] == split(12, 3)["tokens"]
    assert main(["eval", str(run), "--data", f"{folder}:dev"]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("has no split 'dev' (splits: train, validation, test); name one")
    )


def test_help_explains_the_options():
    result = lsllm("train", "--help")
    assert result.returncode == 0
    for words in (
        "--attention {causal,bidirectional}",
        "--pooling {last,mean,max}",
        "--resume",
        "--config",
        "LoRA rank (default: 12)",
        "--epochs EPOCHS       training epochs; default: 2 for sequence runs, 3 for",
        "--report-to {none,tensorboard,wandb}",
    ):
        assert words in result.stdout


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr
    return lines[0]


def test_bad_inputs_give_one_line_errors(cli_runs, tiny_model, tmp_path, in_process):
    lsllm = in_process
    _, seq, _ = cli_runs

    def train_error(train, dev=seq["dev"], model=tiny_model, *extra: str) -> str:
        files = {"train": train, "dev": dev}
        return one_line_error(
            lsllm(*train_args(model, "sequence", files, tmp_path / "out", "--epochs", "1", *extra))
        )

    missing = train_error(tmp_path / "nope.jsonl")
    assert "file not found" in missing and "nope.jsonl" in missing

    offline = train_error("someone/sst2:train")  # the tests run with HF_HUB_OFFLINE=1
    assert offline.startswith("lsllm: error: cannot load split 'train' of dataset 'someone/sst2'")

    wrong_column = train_error(seq["train"], seq["dev"], tiny_model, "--text-field", "body")
    assert "body" in wrong_column and "--text-field" in wrong_column

    unknown_label = train_error(
        seq["train"], write_jsonl(tmp_path / "dev.jsonl", [{"text": "fine", "label": "meh"}])
    )
    assert "meh" in unknown_label and "--labels" in unknown_label

    empty = write_jsonl(
        tmp_path / "empty.jsonl", [{"text": "good", "label": "pos"}, {"text": "  ", "label": "neg"}]
    )
    assert "row 2" in train_error(empty)

    assert "model folder not found" in train_error(seq["train"], seq["dev"], tmp_path / "no-model")
    assert "not found" in one_line_error(lsllm("predict", str(tmp_path / "no-run"), "text"))
    assert "--config" in one_line_error(lsllm("train", "--task", "sequence"))


def test_corrupt_run_folder_gives_one_line_error(cli_runs, tmp_path):
    import shutil

    root, _, _ = cli_runs
    broken = tmp_path / "broken"
    shutil.copytree(root / "seq-run", broken)
    (broken / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    message = one_line_error(lsllm("predict", str(broken), "the film was good"))
    assert "corrupt" in message and "retrain" in message
    (broken / "labels.json").unlink()
    assert "missing labels.json" in one_line_error(lsllm("predict", str(broken), "good"))


@pytest.mark.parametrize(
    "name",
    [
        "config.yaml",
        "labels.json",
        "adapter_config.json",
        "adapter_model.safetensors",
        "tokenizer/tokenizer.json",
    ],
)
def test_a_truncated_run_file_gives_one_line_error_naming_the_fix(cli_runs, tmp_path, name):
    import shutil

    root, _, _ = cli_runs
    broken = tmp_path / "broken"
    shutil.copytree(root / "seq-run", broken)
    content = (broken / name).read_bytes()
    (broken / name).write_bytes(content[: len(content) // 2])
    message = one_line_error(lsllm("predict", str(broken), "the film was good", *FP32))
    assert str(broken) in message and ("retrain" in message or "resume" in message), message


def test_long_inputs_are_truncated_with_one_warning(cli_runs, tmp_path):
    root, _, _ = cli_runs
    long_rows = [{"text": "good " * 200}, {"text": "bad " * 300}, {"text": "fine"}]
    source = write_jsonl(tmp_path / "long.jsonl", long_rows)
    result = lsllm(
        "predict", str(root / "seq-run"), "--input", str(source), "--output", str(tmp_path / "o.jsonl")
    )
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "truncated" in line]
    assert len(warnings) == 1 and "2 of 3 inputs in" in warnings[0] and "long.jsonl" in warnings[0]
    assert "--max-length 64" in warnings[0]


def test_usage_mistakes_are_one_line_errors():
    message = one_line_error(lsllm("predict"))
    assert "required" in message and "--help" in message
    assert "unrecognized arguments: --colour" in one_line_error(lsllm("train", "--colour", "red"))


def test_predict_reads_other_text_columns_with_text_field(cli_runs, tmp_path, in_process):
    root, _, _ = cli_runs
    source = write_jsonl(tmp_path / "in.jsonl", [{"body": "the film was good"}, {"body": "awful"}])
    result = in_process(
        "predict", str(root / "seq-run"), "--input", str(source), "--text-field", "body", *FP32
    )
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["label"] in ("neg", "pos") for line in result.stdout.splitlines()] == [
        True,
        True,
    ]
    assert "body" in one_line_error(in_process("predict", str(root / "seq-run"), "--input", str(source)))


def parsed_config(*argv: str):
    from lsllm.cli import build_parser, config_from_args

    return config_from_args(build_parser().parse_args(["train", *argv]))


def test_presets_fill_values_that_the_file_and_flags_override(tmp_path):
    prompt = parsed_config("--task", "sequence", "--preset", "prompt")
    assert (prompt.template, prompt.head_init, prompt.learning_rate) == ("auto", "label-words", 5e-4)
    paper = parsed_config("--preset", "paper")
    assert (paper.learning_rate, paper.epochs, paper.lora_targets) == (1e-4, 10.0, ["q_proj", "v_proj"])
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"preset": "quick", "epochs": 5}))
    from_file = parsed_config("--config", str(config), "--batch-size", "4")
    assert (from_file.learning_rate, from_file.epochs, from_file.batch_size) == (5e-4, 5.0, 4)
    flag_wins = parsed_config("--config", str(config), "--preset", "paper", "--epochs", "1")
    assert (flag_wins.learning_rate, flag_wins.epochs, flag_wins.lora_targets) == (
        1e-4,
        1.0,
        ["q_proj", "v_proj"],
    )


def test_unknown_preset_in_a_config_file_is_a_one_line_error(tmp_path, in_process):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"preset": "fastest"}))
    message = one_line_error(in_process("train", "--config", str(config)))
    assert "unknown preset 'fastest'" in message and "prompt, paper, quick" in message


@pytest.mark.parametrize("merge", [[], ["--merge"]], ids=["unmerged", "merged"])
def test_export_folder_works_in_predict_and_eval_like_the_run(cli_runs, tmp_path, in_process, merge):
    root, seq, _ = cli_runs
    run, folder = root / "seq-run", tmp_path / "export"
    result = in_process("export", str(run), "--output", str(folder), *merge)
    assert result.returncode == 0, result.stderr
    assert f"export written to {folder}" in result.stdout
    assert ("lora" in json.loads((folder / "config.json").read_text())) == (not merge)
    predicted = [in_process("predict", str(path), "the film was good", *FP32) for path in (run, folder)]
    rows = [json.loads(p.stdout.strip().splitlines()[-1]) for p in predicted]
    assert rows[1]["label"] == rows[0]["label"] and rows[1]["score"] == pytest.approx(rows[0]["score"])
    metrics = tmp_path / "metrics.json"
    evaluated = in_process("eval", str(folder), "--data", str(seq["test"]), "--output", str(metrics), *FP32)
    assert evaluated.returncode == 0, evaluated.stderr
    test = json.loads((run / "metrics.json").read_text())["test"]
    assert json.loads(metrics.read_text())["accuracy"] == test["accuracy"]


def test_export_errors_are_one_line(cli_runs, tiny_model, tmp_path, in_process):
    root, _, _ = cli_runs

    def export_error(run, output) -> str:
        return one_line_error(in_process("export", str(run), "--output", str(output)))

    assert "not found" in export_error(tmp_path / "no-run", tmp_path / "out")
    assert "neither an lsllm run folder nor an export" in export_error(tiny_model, tmp_path / "out")
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("keep me")
    assert "not replaced" in export_error(root / "seq-run", occupied)
    assert (occupied / "notes.txt").read_text() == "keep me" and not (tmp_path / "out").exists()


@pytest.mark.parametrize("spelling", [["--bidirectional-layers", "-9:-5"], ["--bidirectional-layers=-9:-5"]])
def test_a_layer_range_that_starts_with_a_dash_is_read_as_a_value(
    cli_runs, tiny_model, tmp_path, in_process, spelling
):
    """Both spellings reach the model, which names its own layers in the error (it has 2)."""
    _, _, ner = cli_runs
    error = one_line_error(
        in_process(*train_args(tiny_model, "token", ner, tmp_path / "out", "--epochs", "1", *spelling))
    )
    assert "--bidirectional-layers -9:-5 selects none of this model's 2 layers" in error


def test_the_preset_help_states_flags_that_make_the_same_run():
    from lsllm.config import presets_help

    stated = dict(re.findall(r"'(\w+)' \(.*?: (--[^)]*)\)", presets_help()))
    assert set(stated) == {"prompt", "paper", "quick"}
    for preset, flags in stated.items():
        assert parsed_config("--task", "sequence", *flags.split()) == parsed_config(
            "--task", "sequence", "--preset", preset
        ), preset


def test_training_defaults_follow_the_task_and_give_way_to_presets_and_flags():
    def training(*argv: str) -> tuple:
        config = parsed_config(*argv)
        return config.learning_rate, config.batch_size, config.epochs

    assert training("--task", "token") == (5e-4, 16, 4.0)  # taggers lagged far behind at 1e-4 (bench/)
    assert training("--task", "sequence") == (5e-4, 16, 2.0)  # classifiers too
    assert training("--task", "sequence", "--preset", "prompt") == (5e-4, 16, 3.0)
    assert training("--task", "regression") == (1e-4, 8, 3.0)
    assert training("--task", "token", "--preset", "paper") == (1e-4, 8, 10.0)
    assert training("--task", "token", "--learning-rate", "2e-4", "--batch-size", "4") == (2e-4, 4, 4.0)


def test_head_bias_is_a_flag_both_ways():
    assert parsed_config("--task", "token", "--no-head-bias").head_bias is False
    assert parsed_config("--task", "sequence", "--head-bias").head_bias is True
    assert parsed_config("--task", "sequence").head_bias is False


def test_export_as_transformers_or_a_one_line_refusal(cli_runs, tmp_path, in_process):
    root, _, _ = cli_runs
    folder = tmp_path / "stock"
    result = in_process("export", str(root / "tok-run"), "--output", str(folder), "--format", "transformers")
    assert result.returncode == 0, result.stderr
    assert f"merged transformers export written to {folder}" in result.stdout
    assert json.loads((folder / "config.json").read_text())["architectures"] == [
        "LlamaForTokenClassification"
    ]
    refused = in_process(
        "export", str(root / "seq-run"), "--output", str(tmp_path / "x"), "--format", "transformers"
    )
    message = one_line_error(refused)
    assert "--pooling mean" in message and "--format lsllm" in message


def test_onnx_export_predicts_and_evaluates_like_the_run(cli_runs, tmp_path, in_process):
    pytest.importorskip("onnxruntime", reason="the [onnx] extra is not installed")
    root, _, tok = cli_runs
    run, folder = root / "tok-run", tmp_path / "onnx"
    result = in_process("export", str(run), "--output", str(folder), "--format", "onnx", "--int8")
    assert result.returncode == 0, result.stderr
    assert (
        f"merged onnx export written to {folder}" in result.stdout and "note: the int8 graph" in result.stdout
    )
    predicted = [
        in_process("predict", str(path), "John Smith visited Paris", *FP32) for path in (run, folder)
    ]
    rows = [json.loads(p.stdout.strip().splitlines()[-1]) for p in predicted]
    assert rows[1]["tags"] == rows[0]["tags"] and rows[1]["scores"] == pytest.approx(rows[0]["scores"])
    int8 = in_process("predict", str(folder), "John Smith visited Paris", "--precision", "int8")
    assert int8.returncode == 0, int8.stderr
    metrics = [tmp_path / "run.json", tmp_path / "onnx.json"]
    for path, output in zip((run, folder), metrics, strict=True):
        evaluated = in_process("eval", str(path), "--data", str(tok["dev"]), "--output", str(output), *FP32)
        assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(metrics[1].read_text()) == json.loads(metrics[0].read_text())
    wrong = in_process("export", str(run), "--output", str(tmp_path / "x"), "--int8")
    assert "--int8 adds an int8 graph to an ONNX export" in one_line_error(wrong)
