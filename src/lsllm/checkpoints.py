"""Checkpoints that survive `kill -9`: each one records what it holds once complete, and `--resume` takes
the newest one whose files still match that record.

The Trainer writes a checkpoint file by file into its final folder, so a process killed mid-save leaves
a folder that looks like a checkpoint but cannot be resumed from (and the Trainer would pick it, being
the newest). A manifest of every file's size and SHA-256, written last, marks a checkpoint as whole.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from pathlib import Path

from transformers import TrainerCallback

from lsllm import processes
from lsllm.atomic import write_json_atomic

logger = logging.getLogger(__name__)

MANIFEST = "lsllm-manifest.json"
_CHECKPOINT = re.compile(r"checkpoint-(\d+)")


def _digest(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)


def write_manifest(folder: Path) -> None:
    """Record the size and hash of every file in a checkpoint folder that has been completely written."""
    files = {
        str(p.relative_to(folder)): {"bytes": p.stat().st_size, "sha256": _digest(p)} for p in _files(folder)
    }
    write_json_atomic(folder / MANIFEST, {"files": files})


def damage(folder: Path) -> str | None:
    """Why a checkpoint cannot be resumed from (one phrase), or None if it is whole."""
    try:
        recorded = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["files"]
    except FileNotFoundError:
        return "it was never completed (the run stopped while writing it)"
    except (OSError, ValueError, KeyError, TypeError):
        return f"its {MANIFEST} is unreadable"
    for name, expected in recorded.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != expected["bytes"]:
            return f"{name} is truncated ({path.stat().st_size} of {expected['bytes']} bytes)"
        if _digest(path) != expected["sha256"]:
            return f"{name} is corrupt (its checksum differs)"
    return None


def step_of(checkpoint: Path | None) -> int:
    """The training step a checkpoint folder was saved at; 0 for none (the start)."""
    return int(_CHECKPOINT.fullmatch(checkpoint.name).group(1)) if checkpoint else 0


def checkpoints(folder: Path) -> list[Path]:
    """The checkpoint folders in `folder`, newest (highest step) first."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and _CHECKPOINT.fullmatch(p.name)]
    return sorted(found, key=step_of, reverse=True)


def newest_intact(folder: Path) -> Path | None:
    """The newest checkpoint whose files match its manifest. Newer, damaged ones are removed with a warning:
    training reaches their step again and would otherwise trip over their leftovers."""
    for checkpoint in checkpoints(folder):
        problem = damage(checkpoint)
        if problem is None:
            return checkpoint
        logger.warning("skipping %s: %s; resuming from an earlier checkpoint", checkpoint, problem)
        shutil.rmtree(checkpoint)
    return None


class ManifestCallback(TrainerCallback):
    """Writes the manifest of each checkpoint once the Trainer has finished saving it."""

    def on_save(self, args, state, control, **kwargs):
        # Each process saves its own random states into the checkpoint; the manifest must list them all.
        processes.wait_for_everyone()
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if args.should_save and folder.is_dir():  # the main process only, when several train
            write_manifest(folder)
