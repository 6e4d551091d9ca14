import pytest
import torch

from lsllm.config import TrainConfig
from lsllm.modeling.lora import FastDropout, add_lora, keep_mask
from lsllm.modeling.model import build_model


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_each_element_is_kept_with_probability_one_minus_p(p):
    torch.manual_seed(0)
    kept = keep_mask(torch.Size([400, 1000]), p, torch.device("cpu")).float().reshape(-1, 4)
    # Every one of the four 16-bit chunks cut from a 64-bit draw is unbiased, the sign chunk too.
    # 100k draws per chunk: the standard error is under 0.0016.
    assert torch.allclose(kept.mean(dim=0), torch.full((4,), 1 - p), atol=0.006)


def test_neighbouring_elements_are_dropped_independently():
    torch.manual_seed(0)
    kept = keep_mask(torch.Size([200_000, 2]), 0.5, torch.device("cpu")).float()
    both = (kept[:, 0] * kept[:, 1]).mean()
    assert abs(both.item() - 0.25) < 0.005


def test_training_output_keeps_scaled_inputs_or_zeros_and_gradients_follow_the_mask():
    torch.manual_seed(0)
    x = torch.randn(64, 48, requires_grad=True)
    dropout = FastDropout(0.25).train()
    y = dropout(x)
    kept = y != 0
    assert 0.6 < kept.float().mean().item() < 0.9
    assert torch.allclose(y[kept], x[kept] / 0.75)
    y.sum().backward()
    assert torch.equal(x.grad, kept.float() / 0.75)


def test_masks_follow_torch_seed_and_differ_between_calls():
    x = torch.ones(32, 32)
    dropout = FastDropout(0.5).train()
    torch.manual_seed(3)
    first, second = dropout(x), dropout(x)
    torch.manual_seed(3)
    assert torch.equal(dropout(x), first)
    assert not torch.equal(first, second)


def test_evaluation_passes_inputs_through():
    x = torch.randn(8, 8)
    assert torch.equal(FastDropout(0.5).eval()(x), x)
    assert torch.equal(FastDropout(0.0).train()(x), x)


def test_lora_layers_get_fast_dropout_with_the_configured_rate(tiny_model):
    config = TrainConfig(model=str(tiny_model), task="sequence")
    model = add_lora(build_model(config, 2), 4, 8, 0.1, None)
    dropouts = [module for name, module in model.named_modules() if ".lora_dropout." in name]
    assert len(dropouts) == len([name for name, _ in model.named_modules() if name.endswith(".lora_A")])
    assert all(type(m) is FastDropout and m.p == 0.1 for m in dropouts)
