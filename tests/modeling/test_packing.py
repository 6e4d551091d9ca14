"""Packing several examples into one row computes exactly what the padded batch computes."""

import pytest
import torch

from lsllm.modeling.packing import first_fit_rows, plan_packing
from tests.helpers import untrained_classifier

TEXTS = [
    "the film was good",
    "bad",
    "John Smith visited Paris and Berlin last week with Mary Jones",
    "a",
    "the plot was bad and the ending was awful",
    "what a wonderful movie",
]


def test_first_fit_puts_short_examples_beside_long_ones():
    assert first_fit_rows([10, 2, 7, 3, 1], width=10) == [[0], [2, 3], [1, 4]]


def test_a_batch_that_cannot_lose_a_row_is_not_packed():
    assert plan_packing(torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])) is None


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_packed_slots_restart_positions_and_come_from_real_tokens(padding_side):
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0]])
    if padding_side == "left":
        mask = mask.flip(1)
    packing = plan_packing(mask)
    assert packing.example.tolist() == [[0, 0, 0, 0, 0, 0], [2, 2, 2, 1, 1, -1]]
    assert packing.position_ids[1].tolist()[:5] == [0, 1, 2, 0, 1]
    real = packing.source[packing.source >= 0]
    assert sorted(real.tolist()) == mask.reshape(-1).nonzero().squeeze(1).tolist()


def padded_and_packed(classifier, implementation, texts=TEXTS):
    model = classifier.model
    model.config._attn_implementation = implementation
    batch = classifier.collate([{"input_ids": classifier.tokenizer(t)["input_ids"]} for t in texts])
    results = []
    for packing in (False, True):
        model.packing = packing
        model.zero_grad()
        logits = model(**batch)["logits"]
        if classifier.task == "token":
            logits = logits[batch["attention_mask"].bool()]
        logits.pow(2).sum().backward()
        gradient = torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])
        results.append((logits.detach(), gradient))
    return results


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
@pytest.mark.parametrize(
    ("task", "attention", "pooling"),
    [
        ("sequence", "causal", "last"),
        ("sequence", "bidirectional", "mean"),
        ("sequence", "bidirectional", "max"),
        ("token", "causal", "last"),
        ("token", "bidirectional", "last"),
    ],
)
@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_packed_batch_gives_the_padded_logits_and_gradients(
    tiny_model, task, attention, pooling, implementation, padding_side
):
    classifier = untrained_classifier(tiny_model, task, attention, pooling, padding_side)
    (padded, padded_grad), (packed, packed_grad) = padded_and_packed(classifier, implementation)
    assert plan_packing(classifier.collate([{"input_ids": [1] * len(t)} for t in TEXTS])["attention_mask"])
    assert torch.allclose(padded, packed, atol=1e-5)
    assert torch.allclose(padded_grad, packed_grad, atol=1e-5)


@pytest.mark.parametrize("arch", ["qwen2", "mistral"])
@pytest.mark.parametrize("attention", ["causal", "bidirectional"])
def test_packing_works_for_other_architectures(tiny_models, arch, attention):
    classifier = untrained_classifier(tiny_models[arch], "token", attention)
    (padded, _), (packed, _) = padded_and_packed(classifier, "sdpa")
    assert torch.allclose(padded, packed, atol=1e-5)


def test_packed_examples_do_not_see_each_other(tiny_model):
    """Changing one example changes nothing for the examples packed beside it."""
    classifier = untrained_classifier(tiny_model, "token", "bidirectional")
    (_, _), (before, _) = padded_and_packed(classifier, "sdpa")
    changed = [*TEXTS[:3], "b", *TEXTS[4:]]
    (_, _), (after, _) = padded_and_packed(classifier, "sdpa", changed)
    lengths = [len(classifier.tokenizer(t)["input_ids"]) for t in TEXTS]
    start = sum(lengths[:3])
    assert torch.equal(before[:start], after[:start])
    assert torch.equal(before[start + lengths[3] :], after[start + lengths[3] :])
