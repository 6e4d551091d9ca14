import pytest
import torch

from lsllm.errors import LsllmError
from lsllm.modeling.attention import check_attention, set_attention
from lsllm.modeling.backbone import load_backbone


def final_states(backbone, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return backbone(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[0]


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("arch", ["llama", "qwen2", "mistral"])
def test_causal_tokens_never_see_later_tokens(tiny_models, arch, impl):
    backbone = load_backbone(str(tiny_models[arch]), "causal", torch.float32, impl, False).eval()
    ids = torch.randint(3, 200, (1, 9), generator=torch.Generator().manual_seed(0))
    for position in range(1, 9):
        changed = ids.clone()
        changed[0, position] += 1
        before, after = final_states(backbone, ids), final_states(backbone, changed)
        assert torch.equal(before[:position], after[:position]), f"a token saw position {position}"
        assert not torch.allclose(before[position], after[position])


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("arch", ["llama", "qwen2", "mistral"])
def test_bidirectional_tokens_see_later_tokens(tiny_models, arch, impl):
    backbone = load_backbone(str(tiny_models[arch]), "bidirectional", torch.float32, impl, False).eval()
    ids = torch.randint(3, 200, (1, 9), generator=torch.Generator().manual_seed(0))
    changed = ids.clone()
    changed[0, -1] += 1
    before, after = final_states(backbone, ids), final_states(backbone, changed)
    assert all(not torch.allclose(before[i], after[i]) for i in range(9))


def test_check_attention_catches_a_model_that_ignores_the_switch(tiny_model):
    backbone = load_backbone(str(tiny_model), "bidirectional", torch.float32, None, False)
    with pytest.raises(LsllmError, match="did not switch to causal attention"):
        check_attention(backbone, "causal", backbone.config.vocab_size)


def test_unknown_attention_mode_is_refused(tiny_model):
    backbone = load_backbone(str(tiny_model), "causal", torch.float32, None, False)
    with pytest.raises(LsllmError, match="use one of: causal, bidirectional"):
        set_attention(backbone, "sideways")
