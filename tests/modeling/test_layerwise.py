"""Layer-wise unmasking: the chosen layers see later tokens, the layers below them never do, and
padding, padding side, packing and batch composition never change what a token's state is."""

import pytest
import torch

from lsllm.config import TrainConfig
from lsllm.errors import LsllmError
from lsllm.modeling.model import build_model
from tests.helpers import untrained_classifier
from tests.tiny import ARCHITECTURES, build_tiny_model

LAYERS = 4


@pytest.fixture(scope="module")
def deep_models(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("deep")
    return {arch: build_tiny_model(arch, root / arch, layers=LAYERS) for arch in ARCHITECTURES}


def layerwise_model(path, spec: str, impl: str = "sdpa", packing: bool = True):
    config = TrainConfig(
        model=str(path), task="token", bidirectional_layers=spec, attn_implementation=impl, packing=packing
    )
    torch.manual_seed(0)
    return build_model(config, 3).eval()


def layer_outputs(model, ids: torch.Tensor, mask: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Each decoder layer's output states (batch, length, hidden), in the padded layout."""
    mask = torch.ones_like(ids) if mask is None else mask
    captured = []
    hooks = [
        layer.register_forward_hook(
            lambda _, __, out: captured.append(out[0] if isinstance(out, tuple) else out)
        )
        for layer in model.backbone.layers
    ]
    with torch.no_grad():
        model.hidden_states(ids, mask)
    for hook in hooks:
        hook.remove()
    return captured


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("arch", list(ARCHITECTURES))
@pytest.mark.parametrize("spec, first_unmasked", [("-2:", 2), ("1:3", 1), (":1", 0)])
def test_layers_below_the_range_never_see_later_tokens_and_the_range_does(
    deep_models, arch, impl, spec, first_unmasked
):
    model = layerwise_model(deep_models[arch], spec, impl)
    ids = torch.randint(3, 200, (1, 8), generator=torch.Generator().manual_seed(0))
    for position in range(1, 8):
        changed = ids.clone()
        changed[0, position] += 1
        before, after = layer_outputs(model, ids), layer_outputs(model, changed)
        for layer in range(first_unmasked):
            assert torch.equal(before[layer][0, :position], after[layer][0, :position]), (
                f"causal layer {layer} saw position {position}"
            )
        seen = before[first_unmasked][0, :position] - after[first_unmasked][0, :position]
        assert seen.abs().amax(dim=-1).min() > 1e-6, f"layer {first_unmasked} missed position {position}"


def test_a_layer_inside_the_range_sees_what_full_unmasking_sees_at_that_layer(deep_models):
    """With every layer in the range, layer-wise unmasking is plain bidirectional attention."""
    model = layerwise_model(deep_models["llama"], "0:")
    config = TrainConfig(model=str(deep_models["llama"]), task="token", attention="bidirectional")
    torch.manual_seed(0)
    full = build_model(config, 3).eval()
    ids = torch.randint(3, 200, (2, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(
            model.hidden_states(ids, torch.ones_like(ids)),
            full.hidden_states(ids, torch.ones_like(ids)),
            atol=1e-5,
        )


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("packing", [True, False])
def test_padding_side_packing_and_batch_never_change_a_tokens_states(deep_models, impl, packing):
    model = layerwise_model(deep_models["qwen2"], "-2:", impl, packing)
    generator = torch.Generator().manual_seed(2)
    lengths = [7, 3, 5, 2]
    rows = [torch.randint(3, 200, (n,), generator=generator) for n in lengths]
    alone = []
    with torch.no_grad():
        for row in rows:
            alone.append(model.hidden_states(row.unsqueeze(0), torch.ones(1, len(row), dtype=torch.long))[0])
        for side in ("left", "right"):
            ids = torch.zeros(len(rows), max(lengths), dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, row in enumerate(rows):
                span = slice(max(lengths) - len(row), None) if side == "left" else slice(0, len(row))
                ids[i, span], mask[i, span] = row, 1
            batched = model.hidden_states(ids, mask)
            for i in range(len(rows)):
                real = batched[i][mask[i].bool()]
                assert torch.allclose(real, alone[i], atol=1e-5), f"{side} padding changed example {i}"


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_sequence_predictions_do_not_depend_on_the_batch(tiny_model, pooling):
    classifier = untrained_classifier(tiny_model, "sequence", "bidirectional", pooling, "left")
    texts = ["the film was good", "what a boring movie and a bad plot", "lovely"]
    # the same model, layer-wise: only the last of the tiny model's two layers unmasked
    layerwise = untrained_classifier(tiny_model, "sequence", "bidirectional", pooling, "left", layers="-1:")
    together = [row["probs"] for row in layerwise.predict(texts)]
    for text, probs in zip(texts, together, strict=True):
        assert layerwise.predict([text])[0]["probs"] == pytest.approx(probs, abs=1e-5)
    unmasked = [row["probs"] for row in classifier.predict(texts)]
    assert all(a != pytest.approx(b, abs=1e-4) for a, b in zip(together, unmasked, strict=True))


@pytest.mark.parametrize(
    "values, message",
    [
        ({"bidirectional_layers": "4"}, "takes a slice of layer numbers"),
        ({"bidirectional_layers": "a:b"}, "takes a slice of layer numbers"),
        ({"bidirectional_layers": "-2:", "attention": "causal"}, "leave out --attention causal"),
    ],
)
def test_bad_layer_ranges_are_refused_in_one_line(values, message):
    config = TrainConfig(model="m", task="token", train="t", dev="d", output="o", **values)
    with pytest.raises(LsllmError, match=message):
        config.validate()


def test_a_range_outside_the_model_is_refused(tiny_model):
    with pytest.raises(LsllmError, match="selects none of this model's 2 layers"):
        layerwise_model(tiny_model, "5:")


def test_flash_style_backends_are_refused(tiny_model, monkeypatch):
    from lsllm import _compat

    monkeypatch.setattr(_compat, "attention_implementation", lambda config: "flash_attention_2")
    with pytest.raises(LsllmError, match="needs a causal backbone with eager or sdpa attention"):
        layerwise_model(tiny_model, "-1:")
