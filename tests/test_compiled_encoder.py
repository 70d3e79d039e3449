"""The opt-in torch.compile path of the PyTorch encoder (pavenet.inference.compiled) gives the eager
encoder's outputs and the same decoded rows; it refuses to run outside inference mode."""

import pytest
import torch
from test_demo_predictor import tiny_cfg

from pavenet.inference.predictor import ClipPredictor

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_compiled_encoder_equals_eager():
    torch.manual_seed(0)
    eager = ClipPredictor(tiny_cfg())
    compiled = ClipPredictor(tiny_cfg(), model=eager.model, compile_encoder=True)
    g = torch.Generator().manual_seed(1)
    images = [torch.randint(0, 256, (3, 64, 96), generator=g, dtype=torch.uint8) for _ in range(3)]
    from torch._dynamo.utils import counters

    graphs = counters["stats"]["unique_graphs"]
    with torch.no_grad():
        ref = [eager.encode(im)[0] for im in images]
        assert counters["stats"]["unique_graphs"] == graphs  # the eager predictor compiles nothing
        got = [compiled.encode(im)[0] for im in images]
        assert counters["stats"]["unique_graphs"] > graphs  # the compiled one went through dynamo
        for r, c in zip(ref, got):
            assert (c.memory - r.memory).abs().max() < 1e-4
            assert torch.equal(c.padding_mask, r.padding_mask) and torch.equal(
                c.spatial_shapes, r.spatial_shapes
            )
            assert max((a - b).abs().max().item() for a, b in zip(c.values, r.values)) < 1e-4
        a, b = eager.model.decode_rows(ref), eager.model.decode_rows(got)
    assert torch.equal(a["query_index"], b["query_index"])
    assert ((a["keypoints"] - b["keypoints"]).abs() * torch.tensor([96.0, 64.0])).max() < 1e-3
    with pytest.raises(RuntimeError, match="inference"):
        compiled.backend.encode_frame(images[0])  # grad enabled
