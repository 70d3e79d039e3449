"""The export-time formulations of the deformable sampling (modeling/msda_export.py) compute the PyTorch
core's sums, in PyTorch, on random inputs with samples inside, on the border of and outside the maps."""

import pytest
import torch

from pavenet.modeling.msda_core import ms_deform_attn_core
from pavenet.modeling.msda_export import EXPORT_SAMPLERS


@pytest.mark.parametrize("impl", sorted(EXPORT_SAMPLERS))
@pytest.mark.parametrize(
    "queries", [None, 7]
)  # None: Q = S (the encoder); 7: fewer queries than a level
def test_export_samplers_equal_the_pytorch_core(impl, queries):
    g = torch.Generator().manual_seed(0)
    shapes = [(12, 20), (6, 10), (3, 5), (1, 2)]
    s = sum(h * w for h, w in shapes)
    q = queries or s
    value = torch.randn(2, s, 4, 8, generator=g)
    locs = (
        torch.rand(2, q, 4, len(shapes), 3, 2, generator=g) * 1.4 - 0.2
    )  # some beyond the borders
    weights = torch.rand(2, q, 4, len(shapes), 3, generator=g)
    ref = ms_deform_attn_core(value, torch.tensor(shapes), locs, weights, "pytorch")
    got = ms_deform_attn_core(value, torch.tensor(shapes), locs, weights, impl)
    assert got.shape == ref.shape == (2, q, 32)
    assert (got - ref).abs().max() < 1e-4


def test_unknown_formulation_is_named():
    with pytest.raises(ValueError, match="export formulation"):
        ms_deform_attn_core(
            torch.zeros(1, 2, 1, 1),
            [(1, 2)],
            torch.zeros(1, 1, 1, 1, 1, 2),
            torch.zeros(1, 1, 1, 1, 1),
            "nope",
        )
