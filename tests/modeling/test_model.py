"""The model's loss for each label shape, and class weights applied as `--class-weights auto` says."""

import pytest
import torch
import torch.nn.functional as F

from lsllm.config import TrainConfig
from lsllm.data.encoding import IGNORE_INDEX
from lsllm.data.labels import LabelMap
from lsllm.modeling.model import build_model


def model_for(tiny_model, task: str, labels: LabelMap, weights=None):
    return build_model(TrainConfig(model=str(tiny_model), task=task), len(labels), labels.shape, weights)


def test_balanced_class_weights_make_every_class_weigh_the_same(tiny_model):
    """n / (k * n_c): with these weights cross-entropy is the mean over classes of each class's mean loss,
    so a class seen once counts as much as one seen three times."""
    labels = LabelMap.from_names(["a", "b", "c"])
    gold = torch.tensor([0, 0, 0, 1, 1, 2])
    weights = labels.balancing_weights(gold.tolist())
    assert weights == pytest.approx([6 / 9, 6 / 6, 6 / 3])
    torch.manual_seed(0)
    logits = torch.randn(6, 3)
    losses = F.cross_entropy(logits, gold, reduction="none")
    per_class = torch.stack([losses[gold == c].mean() for c in range(3)])
    weighted = model_for(tiny_model, "sequence", labels, weights).loss(logits, gold)
    assert weighted.item() == pytest.approx(per_class.mean().item(), rel=1e-6)
    assert model_for(tiny_model, "sequence", labels).loss(logits, gold).item() == pytest.approx(
        losses.mean().item(), rel=1e-6
    )
    assert weighted.item() != pytest.approx(losses.mean().item(), rel=1e-3)


def test_token_class_weights_skip_unlabelled_tokens(tiny_model):
    labels = LabelMap.from_names(["O", "B-X", "I-X"])
    gold = torch.tensor([[IGNORE_INDEX, 0, 0, 1, 2], [IGNORE_INDEX, 0, 0, 0, IGNORE_INDEX]])
    weights = labels.balancing_weights([[0, 0, 1, 2], [0, 0, 0]])  # the words' tags: O 5, B 1, I 1
    assert weights == pytest.approx([7 / 15, 7 / 3, 7 / 3])
    torch.manual_seed(1)
    logits = torch.randn(2, 5, 3)
    kept = gold != IGNORE_INDEX
    losses = F.cross_entropy(logits[kept], gold[kept], reduction="none")
    w = torch.tensor(weights)[gold[kept]]
    loss = model_for(tiny_model, "token", labels, weights).loss(logits, gold)
    assert loss.item() == pytest.approx(((w * losses).sum() / w.sum()).item(), rel=1e-6)


def test_multi_label_weights_are_binary_cross_entropys_pos_weight(tiny_model):
    labels = LabelMap.from_names(["a", "b"], "multi")
    gold = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    weights = labels.balancing_weights(gold.tolist())
    assert weights == pytest.approx([3.0, 1.0])  # a: 3 negatives, 1 positive; b: 2 and 2
    torch.manual_seed(2)
    logits = torch.randn(4, 2)
    p = logits.sigmoid()
    by_hand = -(torch.tensor(weights) * gold * p.log() + (1 - gold) * (1 - p).log()).mean()
    loss = model_for(tiny_model, "sequence", labels, weights).loss(logits, gold)
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-5)
    unweighted = -(gold * p.log() + (1 - gold) * (1 - p).log()).mean()
    assert model_for(tiny_model, "sequence", labels).loss(logits, gold).item() == pytest.approx(
        unweighted.item(), rel=1e-5
    )


def test_regression_loss_is_the_mean_squared_error_of_the_one_output(tiny_model):
    model = model_for(tiny_model, "regression", LabelMap.for_regression("score"))
    assert model.head.out_features == 1
    loss = model.loss(torch.tensor([[1.0], [2.5], [-1.0]]), torch.tensor([0.0, 2.0, 1.0]))
    assert loss.item() == pytest.approx((1 + 0.25 + 4) / 3)
