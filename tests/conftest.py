"""Fixtures: tiny random models of each architecture, and toy data files, shared by the whole suite."""

import logging
import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ner_rows, sentiment_rows, write_splits
from tests.tiny import ARCHITECTURES, build_small_model, build_tiny_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")
logging.getLogger("lsllm").setLevel(logging.INFO)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {arch: build_tiny_model(arch, root / arch) for arch in ARCHITECTURES}


@pytest.fixture(scope="session")
def tiny_model(tiny_models) -> Path:
    return tiny_models["llama"]


@pytest.fixture(scope="session")
def small_model(tmp_path_factory) -> Path:
    return build_small_model(tmp_path_factory.mktemp("small"))


@pytest.fixture
def sentiment_files(tmp_path) -> dict[str, Path]:
    return write_splits(tmp_path, sentiment_rows, {"train": 32, "dev": 12, "test": 12})


@pytest.fixture
def ner_files(tmp_path) -> dict[str, Path]:
    return write_splits(tmp_path, ner_rows, {"train": 32, "dev": 12, "test": 12})


@pytest.fixture
def in_process(capsys):
    """Run `lsllm` in this process (fast) and hand back what a subprocess would have shown."""
    from lsllm.cli import main

    def run(*args: str) -> subprocess.CompletedProcess:
        code = main(list(args))
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, captured.out, captured.err)

    return run
