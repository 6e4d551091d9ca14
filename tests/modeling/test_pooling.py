import pytest
import torch

from lsllm.errors import LsllmError
from lsllm.modeling.pooling import pool

# Two rows of real states [1, 2, 3] and [4, 5]; the second is padded with a huge value that must never count.
REAL = torch.tensor([[[1.0], [2.0], [3.0]], [[4.0], [5.0], [999.0]]])
RIGHT_MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])
LEFT = torch.tensor([[[1.0], [2.0], [3.0]], [[999.0], [4.0], [5.0]]])
LEFT_MASK = torch.tensor([[1, 1, 1], [0, 1, 1]])


@pytest.mark.parametrize(
    ("mode", "expected"), [("last", [3.0, 5.0]), ("mean", [2.0, 4.5]), ("max", [3.0, 5.0])]
)
@pytest.mark.parametrize(("hidden", "mask"), [(REAL, RIGHT_MASK), (LEFT, LEFT_MASK)], ids=["right", "left"])
def test_pooling_counts_real_tokens_only(mode, expected, hidden, mask):
    assert pool(hidden, mask, mode).squeeze(-1).tolist() == expected


def test_max_pooling_ignores_padding_even_when_real_states_are_negative():
    hidden = torch.tensor([[[-3.0], [-2.0], [0.0]]])
    assert pool(hidden, torch.tensor([[1, 1, 0]]), "max").item() == -2.0


def test_unknown_pooling_is_refused():
    with pytest.raises(LsllmError, match="use one of: last, mean, max"):
        pool(REAL, RIGHT_MASK, "median")
