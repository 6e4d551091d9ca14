"""The number format: auto's choice on every kind of hardware (faked both ways, so the result never depends
on the CPU the suite runs on), and the bf16 path end to end on tiny models, which runs on any CPU."""

from __future__ import annotations

import logging
import time

import pytest
import torch

import lsllm
from lsllm import _compat
from lsllm.artifacts import RunFolder
from lsllm.config import TrainConfig
from lsllm.export import export_run
from lsllm.modeling import precision
from lsllm.training import training_arguments
from tests.helpers import sentiment_rows, write_splits
from tests.serving.client import predict as post_predict
from tests.serving.client import running

TEXTS = ["the film was good", "what a boring plot"]


# What bench/ measured: the AMD EPYC's bf16 matmuls ran 4.4x as fast as fp32; the Intel Xeon's (AVX-512
# BF16, no AMX) at 0.5x.
EPYC_SPEEDUP, XEON_SPEEDUP = 4.4, 0.5


def fake_cpu(patch: pytest.MonkeyPatch, units: bool, speedup: float | None = None) -> None:
    """No GPU, and a CPU with or without bf16 units whose bf16 matmuls ran `speedup` times as fast as fp32
    (None: never probed, as on a CPU without units)."""
    patch.setattr(_compat, "cpu_bf16_units", lambda: units)
    patch.setattr(precision, "cpu_bf16_speedup", lambda: speedup)
    patch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def cpu_with_bf16_units(monkeypatch):
    fake_cpu(monkeypatch, units=True, speedup=EPYC_SPEEDUP)


@pytest.fixture
def cpu_with_slow_bf16_units(monkeypatch):
    fake_cpu(monkeypatch, units=True, speedup=XEON_SPEEDUP)


@pytest.fixture
def cpu_without_bf16_units(monkeypatch):
    fake_cpu(monkeypatch, units=False)


@pytest.fixture(autouse=True)
def fresh_choice_log():
    precision._log_choice.cache_clear()
    yield
    precision._log_choice.cache_clear()


def test_auto_picks_bf16_on_a_cpu_with_bf16_units_and_says_why_once(cpu_with_bf16_units, caplog):
    with caplog.at_level(logging.INFO, logger="lsllm"):
        assert precision.resolve_precision("auto") == "bf16"
        assert precision.resolve_precision("auto", torch.device("cpu")) == "bf16"
    said = [r.getMessage() for r in caplog.records if "precision auto" in r.getMessage()]
    assert said == ["precision auto: bf16, since this CPU's bf16 units ran a matmul 4.4x as fast as fp32"]


def test_auto_keeps_fp32_where_the_bf16_units_are_slower_than_fp32(cpu_with_slow_bf16_units, caplog):
    with caplog.at_level(logging.INFO, logger="lsllm"):
        assert precision.resolve_precision("auto") == "fp32"
    assert "fp32, since this CPU has bf16 units, but they ran a matmul at 0.5x fp32's speed" in caplog.text


def test_the_bf16_probe_measures_bf16_against_fp32(monkeypatch):
    """A fake matmul that takes 3 ms in fp32 and 1 ms in bf16: the probe must report about 3x."""
    seconds = {torch.float32: 0.003, torch.bfloat16: 0.001}
    monkeypatch.setattr(torch, "matmul", lambda a, b: time.sleep(seconds[a.dtype]))
    precision.cpu_bf16_speedup.cache_clear()
    try:
        assert 2.0 < precision.cpu_bf16_speedup() < 3.5
    finally:
        precision.cpu_bf16_speedup.cache_clear()


def test_auto_keeps_fp32_on_a_cpu_without_bf16_units(cpu_without_bf16_units, caplog):
    with caplog.at_level(logging.INFO, logger="lsllm"):
        assert precision.resolve_precision("auto") == "fp32"
    assert "fp32, since this CPU has no bf16 units, so bf16 would be emulated and slow" in caplog.text


@pytest.mark.parametrize("forced", ["fp32", "bf16"])
def test_a_forced_format_is_kept_whatever_the_hardware(cpu_with_bf16_units, forced):
    assert precision.resolve_precision(forced) == forced


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"avx2", "avx512_bf16"}, "bf16"),
        ({"avx2", "amx_bf16"}, "bf16"),
        ({"avx2", "avx512f"}, "fp32"),
        (set(), "fp32"),
    ],
)
def test_without_torchs_probe_the_cpu_flags_decide(monkeypatch, flags, expected):
    monkeypatch.setattr(_compat, "cpu_bf16_units", lambda: None)
    monkeypatch.setattr(precision, "cpu_bf16_speedup", lambda: EPYC_SPEEDUP)
    monkeypatch.setattr(precision, "cpu_flags", lambda: flags)
    assert precision.resolve_precision("auto", torch.device("cpu")) == expected


@pytest.mark.parametrize(("supported", "expected"), [(True, "bf16"), (False, "fp32")])
def test_auto_on_a_gpu_follows_its_bf16_support(monkeypatch, caplog, supported, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: supported)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Some GPU")
    with caplog.at_level(logging.INFO, logger="lsllm"):
        assert precision.resolve_precision("auto", torch.device("cuda")) == expected
    assert "Some GPU" in caplog.text


def test_cpu_flags_are_read_from_linux():
    flags = precision.cpu_flags()
    if not flags:
        pytest.skip("no /proc/cpuinfo flags on this system")
    assert "fpu" in flags or "sse2" in flags


@pytest.mark.parametrize(
    ("fake", "bf16"),
    [("cpu_with_bf16_units", True), ("cpu_with_slow_bf16_units", False), ("cpu_without_bf16_units", False)],
)
def test_training_arguments_run_bf16_on_a_cpu_only_when_its_units_are_fast(request, tmp_path, fake, bf16):
    request.getfixturevalue(fake)
    config = TrainConfig(model="m", task="sequence", train="t", dev="d", output=str(tmp_path))
    chosen = precision.resolve_precision(config.precision)
    arguments = training_arguments(config, RunFolder(tmp_path), chosen, steps_per_epoch=4)
    assert (arguments.bf16, arguments.use_cpu) == (bf16, True)


def train(model, files, output, **options):
    config = lsllm.TrainConfig(
        model=str(model),
        task="sequence",
        train=str(files["train"]),
        dev=str(files["dev"]),
        test=str(files["test"]),
        output=str(output),
        epochs=2,
        batch_size=8,
        learning_rate=3e-3,
        lora_r=4,
        max_length=32,
        **options,
    )
    return lsllm.train(config)


@pytest.fixture(scope="module")
def bf16_run(tiny_model, tmp_path_factory):
    """A run trained with precision auto on a (faked) CPU with bf16 units: the README demo's case."""
    root = tmp_path_factory.mktemp("bf16")
    files = write_splits(root, sentiment_rows, {"train": 16, "dev": 8, "test": 8})
    with pytest.MonkeyPatch.context() as patch:
        fake_cpu(patch, units=True, speedup=EPYC_SPEEDUP)
        result = train(tiny_model, files, root / "run", precision="auto")
    return result, files


def test_a_bf16_cpu_trains_with_precision_auto_and_reloads(bf16_run):
    result, files = bf16_run
    assert set(result.metrics) >= {"dev", "test"}
    reloaded = lsllm.load(result.run_dir, precision="bf16")
    assert backbone_dtype(reloaded) == torch.bfloat16
    assert reloaded.evaluate(str(files["test"])) == result.metrics["test"]


def backbone_dtype(classifier) -> torch.dtype:
    return next(classifier.model.backbone.parameters()).dtype


def test_bf16_prediction_is_bf16_and_close_to_fp32(bf16_run):
    result, files = bf16_run
    fp32 = lsllm.load(result.run_dir, precision="fp32")
    bf16 = lsllm.load(result.run_dir, precision="bf16")
    assert (backbone_dtype(fp32), backbone_dtype(bf16)) == (torch.float32, torch.bfloat16)
    exact, rounded = fp32.predict(TEXTS), bf16.predict(TEXTS)
    for a, b in zip(exact, rounded, strict=True):
        assert list(b["probs"].values()) == pytest.approx(list(a["probs"].values()), abs=0.05)
    assert [r["probs"] for r in exact] != [r["probs"] for r in rounded]  # really computed in bf16
    assert set(bf16.evaluate(str(files["test"]))) >= {"accuracy", "macro_f1"}


def test_a_bf16_run_exports_and_the_export_predicts_in_bf16(bf16_run, tmp_path):
    result, _ = bf16_run
    folder = export_run(result.run_dir, tmp_path / "export", merge=True).path
    from_run = lsllm.load(result.run_dir, precision="bf16").predict(TEXTS)
    from_export = lsllm.load(folder, precision="bf16").predict(TEXTS)
    for a, b in zip(from_run, from_export, strict=True):
        assert a["label"] == b["label"]
        assert list(b["probs"].values()) == pytest.approx(list(a["probs"].values()), abs=1e-2)


def test_a_bf16_service_answers_like_bf16_predict(bf16_run):
    result, _ = bf16_run
    classifier = lsllm.load(result.run_dir, precision="bf16")
    expected = classifier.predict(TEXTS)
    with running(classifier) as url:
        status, body = post_predict(url, {"inputs": TEXTS})
    assert status == 200
    for got, want in zip(body["predictions"], expected, strict=True):
        assert got["label"] == want["label"]
        assert list(got["probs"].values()) == pytest.approx(list(want["probs"].values()), abs=1e-2)
