"""The training step's cost: the FFN's backward does no layout copies, and the golden-case training-step
benchmark (tools/benchmark.py --golden-train, `pavenet.apps.benchmark.train_golden`) times forward and backward
per backend on the very computation the golden training test checks."""

import json

import pytest
import torch
from test_demo_cli import _load_tool

from pavenet.modeling.transformer import FFN

from conftest import GOLDEN_DIR, OFFICIAL_KEYS, REPO_ROOT

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TRAIN_CASE = GOLDEN_DIR / "train_r50_f3_seed2026"
R50_YAML = str(REPO_ROOT / "configs" / "posetrack17" / "pavenet_r50_3f_pt17.yaml")


def _graph_nodes(t: torch.Tensor):
    seen, stack, names = set(), [t.grad_fn], []
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        names.append(type(fn).__name__)
        stack.extend(f for f, _ in fn.next_functions)
    return names


def test_ffn_backward_has_no_copy_back_and_the_same_numbers_as_an_in_place_relu():
    torch.manual_seed(0)
    ffn = FFN(16, 32, 0.0).train()
    x = torch.randn(
        2, 5, 16, requires_grad=True
    )  # batched (B, N, C): Linear returns a view of its 2-D product
    out = ffn(x)
    nodes = _graph_nodes(out)
    assert "ReluBackward0" in nodes
    assert not {"CopySlices", "AsStridedBackward0"} & set(nodes), nodes
    out.square().sum().backward()
    grads = [x.grad.clone()] + [p.grad.clone() for p in ffn.parameters()]

    ffn.zero_grad()
    x.grad = None
    ffn.layers[0][1].inplace = True  # what the FFN must not do: the copy-back path, same values
    ref = ffn(x)
    assert "CopySlices" in _graph_nodes(ref)  # the check above sees the copy-back when it is there
    ref.square().sum().backward()
    assert torch.equal(out, ref)
    for got, want in zip(grads, [x.grad] + [p.grad for p in ffn.parameters()]):
        assert torch.equal(got, want)


def test_golden_train_benchmark_bad_inputs_are_clear_errors(tmp_path):
    bench = _load_tool("benchmark")
    with pytest.raises(ValueError, match="--official-keys"):
        bench.main(["--config-file", R50_YAML, "--golden-train", str(tmp_path)])
    with pytest.raises(FileNotFoundError, match="input.npz"):
        bench.main(
            [
                "--config-file",
                R50_YAML,
                "--golden-train",
                str(tmp_path),
                "--official-keys",
                str(tmp_path / "keys.txt"),
            ]
        )


def test_golden_train_benchmark_times_forward_and_backward_and_checks_the_loss(tmp_path):
    if not (TRAIN_CASE / "outputs.npz").is_file() or not OFFICIAL_KEYS.is_file():
        pytest.skip(
            f"golden training case {TRAIN_CASE} or key list {OFFICIAL_KEYS} not found (PAVENET_GOLDEN_DIR)"
        )
    from pavenet.modeling.msda_backend import kernel_available

    backend = "kernel" if kernel_available() else "pytorch"
    out = tmp_path / "train_golden.json"
    res = _load_tool("benchmark").main(
        [
            "--config-file",
            R50_YAML,
            "--threads",
            "1",
            "--repeats",
            "1",
            "--backends",
            backend,
            "--golden-train",
            str(TRAIN_CASE),
            "--official-keys",
            str(OFFICIAL_KEYS),
            "--json",
            str(out),
            "--opts",
            "MODEL.DEVICE",
            "cpu",
        ]
    )
    assert json.loads(out.read_text()) == json.loads(json.dumps(res))
    assert (
        res["case"] == TRAIN_CASE.name
        and res["clip_shape"] == [3, 3, 256, 320]
        and res["num_gt"] == 3
    )
    row = res["backends"][backend]
    assert abs(row["total_loss"] - res["official_total_loss"]) <= 1e-4 * res["official_total_loss"]
    for clock in ("ms", "cpu_ms", "user_cpu_ms"):
        assert row[f"forward_{clock}"] > 0 and row[f"backward_{clock}"] > 0
        # one round: the step is its forward plus its backward
        assert row[f"step_{clock}"] == pytest.approx(
            row[f"forward_{clock}"] + row[f"backward_{clock}"]
        )
    assert res["torch_threads"] == 1 and res["machine"]["device"] == "cpu"


def test_unpadded_memory_is_not_copied_and_padded_tokens_are_still_zeroed():
    from pavenet.modeling.ms_deform_attn import MSDeformAttn, _zero_padded

    x = torch.randn(2, 6, 4)
    none_padded = torch.zeros(2, 6, dtype=torch.bool)
    assert _zero_padded(x, none_padded) is x and _zero_padded(x, None) is x
    padded = none_padded.clone()
    padded[1, 4:] = True
    out = _zero_padded(x, padded)
    assert not out[1, 4:].any() and torch.equal(out[~padded], x[~padded])
    # The attention gives the same output with an all-False mask as with none (the skipped fill changed nothing).
    torch.manual_seed(0)
    attn = MSDeformAttn(16, 2, 1, 2, 0.0)
    torch.nn.init.normal_(attn.sampling_offsets.weight, std=0.1)
    q, v = torch.randn(1, 6, 16), torch.randn(1, 6, 16)
    ref, shapes = torch.rand(1, 6, 1, 2), torch.tensor([[2, 3]])
    assert torch.equal(
        attn(q, None, v, ref, shapes, torch.zeros(1, 6, dtype=torch.bool)),
        attn(q, None, v, ref, shapes, None),
    )


def test_joint_attention_of_one_clip_does_not_slice_the_memory():
    """With one clip (B = 1) the persons' value maps are the clip's whole memory: no slice, whose backward
    would zero-fill and copy the whole memory gradient; same output as without value_index."""
    from pavenet.modeling.ms_deform_attn import MultiFrameDeformAttn

    torch.manual_seed(0)
    attn = MultiFrameDeformAttn(3, 16, 2, 1, 2, 0.0)
    memory = torch.randn(1, 3, 6, 16, requires_grad=True)  # (B, F, S, C)
    q = torch.randn(2, 4, 16)  # 2 persons x 4 joint queries, both of clip 0
    ref, shapes = torch.rand(2, 3, 4, 1, 2), torch.tensor([[2, 3]])
    out = attn(q, None, memory, ref, shapes, value_index=torch.zeros(2, dtype=torch.long))
    assert "SliceBackward0" not in _graph_nodes(out)
    per_person = attn(
        q, None, memory.expand(2, -1, -1, -1), ref, shapes
    )  # value_index None: clip n = person n
    torch.testing.assert_close(out, per_person, rtol=0, atol=1e-6)
