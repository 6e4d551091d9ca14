"""The accuracy benchmark's data preparation: every system must see the same, correctly parsed examples."""

import json

from bench.common import task_labels
from bench.datasets import TASKS, prepare
from bench.hf_baseline import IGNORE, _word_token_labels
from tests.tiny import byte_level_tokenizer

SST5_TREES = [
    "(3 (2 (2 The) (2 Rock)) (4 (3 is) (4 (2 -LRB-) (4 great) (2 -RRB-))))",
    "(0 (1 Awful) (0 movie))",
    "(2 (2 It) (2 exists))",
]


def read(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_sst5_trees_become_sentences_with_root_labels(tmp_path):
    data = tmp_path / "datasets"
    (data / "sst5").mkdir(parents=True)
    for split in ("train", "dev", "test"):
        (data / "sst5" / f"{split}.txt").write_text("\n".join(SST5_TREES) + "\n", encoding="utf-8")
    paths = prepare(TASKS["sst5"], data, tmp_path / "work", seed=0)
    assert read(paths["evaluation"]) == [
        {"text": "The Rock is ( great )", "label": "positive"},
        {"text": "Awful movie", "label": "very negative"},
        {"text": "It exists", "label": "neutral"},
    ]
    assert task_labels(TASKS["sst5"], paths) == ["very negative", "neutral", "positive"]


def test_sst2_selection_is_held_out_of_train_and_evaluation_is_whole(tmp_path):
    data = tmp_path / "datasets"
    (data / "sst2").mkdir(parents=True)
    train = "".join(f"phrase number {i} \t{i % 2}\n" for i in range(3000))
    (data / "sst2" / "train.tsv").write_text("sentence\tlabel\n" + train, encoding="utf-8")
    (data / "sst2" / "dev.tsv").write_text(
        'sentence\tlabel\na "quoted" film \t1\nbad \t0\n', encoding="utf-8"
    )
    paths = prepare(TASKS["sst2"], data, tmp_path / "work", seed=0)
    train_texts = {row["text"] for row in read(paths["train"])}
    selection_texts = {row["text"] for row in read(paths["selection"])}
    budget = TASKS["sst2"].budget
    assert (len(train_texts), len(selection_texts)) == (budget.train_examples, budget.selection_examples)
    assert not train_texts & selection_texts
    assert read(paths["evaluation"]) == [
        {"text": 'a "quoted" film', "label": "positive"},
        {"text": "bad", "label": "negative"},
    ]
    again = prepare(TASKS["sst2"], data, tmp_path / "other", seed=0)
    assert again["train"].read_text() == paths["train"].read_text()


def test_tiers_train_on_four_times_the_budget_or_everything_and_select_alike(tmp_path):
    data = tmp_path / "datasets"
    (data / "sst2").mkdir(parents=True)
    train = "".join(f"phrase number {i} \t{i % 2}\n" for i in range(8000))
    (data / "sst2" / "train.tsv").write_text("sentence\tlabel\n" + train, encoding="utf-8")
    (data / "sst2" / "dev.tsv").write_text("sentence\tlabel\ngood \t1\nbad \t0\n", encoding="utf-8")
    budget = TASKS["sst2"].budget
    sizes = {}
    for tier in ("base", "large", "full"):
        paths = prepare(TASKS["sst2"], data, tmp_path / "work", seed=0, tier=tier)
        sizes[tier] = {split: len(read(path)) for split, path in paths.items()}
        assert not {r["text"] for r in read(paths["train"])} & {r["text"] for r in read(paths["selection"])}
    assert [sizes[tier]["train"] for tier in sizes] == [
        budget.train_examples,
        4 * budget.train_examples,
        8000 - 2000,  # SST-2's selection examples are drawn from 2000 held out of train
    ]
    assert len({(s["selection"], s["evaluation"]) for s in sizes.values()}) == 1


def test_token_labels_use_every_tag_of_every_split(tmp_path):
    paths = {}
    for split, tags in (
        ("train", ["B-PER", "O"]),
        ("selection", ["B-LOC", "I-LOC"]),
        ("evaluation", ["O", "O"]),
    ):
        paths[split] = tmp_path / f"{split}.jsonl"
        paths[split].write_text(json.dumps({"tokens": ["a", "b"], "tags": tags}) + "\n")
    assert task_labels(TASKS["conll2003"], paths) == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


def test_hf_baseline_labels_the_first_token_of_each_word():
    tokenizer = byte_level_tokenizer()
    words = ["John", "Smith", "visited", "Paris"]
    encoded = _word_token_labels(tokenizer, words, [1, 2, 0, 3], max_length=64)
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"])
    labelled = [
        (token, label) for token, label in zip(tokens, encoded["labels"], strict=True) if label != IGNORE
    ]
    assert [label for _, label in labelled] == [1, 2, 0, 3]
    assert [token.lstrip("Ġ")[:2] for token, _ in labelled] == ["Jo", "Sm", "vi", "Pa"]
