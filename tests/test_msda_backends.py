"""MODEL.PAVENET.MSDA_IMPL: backend choice, and the compiled kernel (torch-ms-deform-attn) == the PyTorch
reference for the sampling core, every attention module and the whole model (outputs and gradients).

Tolerance: float32 everywhere; the two backends sum the L * P bilinear samples in a different order. Stated:
outputs to 1e-5, gradients of one module to rtol 1e-4 / atol 1e-5, every gradient of the whole model to
1e-4 of that parameter's largest gradient (measured: max |diff| ~1e-6 resp. 2e-6 of the largest).
"""

import pytest
import torch
from detectron2.modeling import build_model
from test_model_meta_arch import _clip

import pavenet.modeling  # noqa: F401
from pavenet.modeling import msda_backend
from pavenet.modeling.ms_deform_attn import (
    MSDeformAttn,
    MultiFrameDeformAttn,
    PoseAwareAttention,
    ms_deform_attn_core,
)

from conftest import load_tiny_cfg

pytestmark = pytest.mark.usefixtures("one_torch_thread")
needs_kernel = pytest.mark.skipif(
    not msda_backend.kernel_available(),
    reason=f"{msda_backend.KERNEL_PACKAGE} is not importable "
    f"(install: {msda_backend.KERNEL_INSTALL})",
)
OUT_TOL = dict(rtol=1e-5, atol=1e-5)
GRAD_TOL = dict(rtol=1e-4, atol=1e-5)


_tiny_cfg = load_tiny_cfg  # test_amp imports it under this name


def test_resolve_and_named_errors(monkeypatch):
    assert msda_backend.resolve_msda_impl("pytorch") == "pytorch"
    with pytest.raises(ValueError, match="MODEL.PAVENET.MSDA_IMPL"):
        msda_backend.resolve_msda_impl("cuda")
    # The package missing: auto falls back, kernel names the package and the install command.
    monkeypatch.setattr(msda_backend, "_import_kernel", lambda: (None, "ImportError: no module"))
    assert msda_backend.resolve_msda_impl("auto") == "pytorch"
    with pytest.raises(
        ImportError, match="torch-ms-deform-attn==0.1.1.*pip install --no-build-isolation"
    ):
        msda_backend.resolve_msda_impl("kernel")
    with pytest.raises(ImportError, match="torch-ms-deform-attn"):
        build_model(_tiny_cfg("MODEL.PAVENET.MSDA_IMPL", "kernel"))
    with pytest.raises(ImportError, match="torch-ms-deform-attn"):
        ms_deform_attn_core(
            torch.zeros(1, 4, 1, 2),
            [(2, 2)],
            torch.zeros(1, 1, 1, 1, 1, 2),
            torch.ones(1, 1, 1, 1, 1),
            impl="kernel",
        )
    model = build_model(_tiny_cfg())  # auto without the kernel: every attention on PyTorch
    assert model.msda_impl == "pytorch"
    impls = {
        m.msda_impl
        for m in model.modules()
        if isinstance(m, (MSDeformAttn, PoseAwareAttention, MultiFrameDeformAttn))
    }
    assert impls == {"pytorch"}


@needs_kernel
def test_auto_uses_the_kernel_in_every_attention_and_logs_it(caplog):
    with caplog.at_level("INFO", logger="pavenet.modeling.msda_backend"):
        model = build_model(_tiny_cfg())
    attns = [
        m
        for m in model.modules()
        if isinstance(m, (MSDeformAttn, PoseAwareAttention, MultiFrameDeformAttn))
    ]
    cfg = _tiny_cfg()
    P = cfg.MODEL.PAVENET
    assert len(attns) == P.ENC_LAYERS + P.POSE_DEC_LAYERS + P.JOINT_DEC_LAYERS
    assert model.msda_impl == "kernel" and all(m.msda_impl == "kernel" for m in attns)
    assert [r.getMessage() for r in caplog.records] == [
        f"Deformable attention: kernel backend in {len(attns)} modules (MSDA_IMPL='auto')"
    ]
    assert build_model(_tiny_cfg("MODEL.PAVENET.MSDA_IMPL", "pytorch")).msda_impl == "pytorch"


def _run_both(fn, tensors):
    """fn(impl, *tensors) -> output; returns {impl: (output, [grads of tensors])} for both backends."""
    res = {}
    for impl in ("pytorch", "kernel"):
        xs = [t.detach().clone().requires_grad_(True) for t in tensors]
        out = fn(impl, *xs)
        proj = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
        (out * proj).sum().backward()
        res[impl] = (out.detach(), [x.grad for x in xs])
    return res


def _assert_backends_agree(res, names):
    (out_p, grads_p), (out_k, grads_k) = res["pytorch"], res["kernel"]
    torch.testing.assert_close(out_k, out_p, **OUT_TOL)
    for name, gp, gk in zip(names, grads_p, grads_k):
        assert gp is not None and gp.abs().sum() > 0, (
            f"no gradient for {name}: the check would be vacuous"
        )
        torch.testing.assert_close(gk, gp, **GRAD_TOL, msg=lambda m: f"grad of {name}: {m}")


@needs_kernel
def test_core_kernel_equals_pytorch_with_gradients():
    torch.manual_seed(0)
    shapes = torch.tensor([(6, 9), (3, 5), (2, 2)])
    s = int(shapes.prod(1).sum())
    value = torch.randn(2, s, 2, 4)
    locs = torch.rand(2, 7, 2, 3, 3, 2) * 1.3 - 0.15  # some points outside the maps (zero padding)
    weights = torch.rand(2, 7, 2, 3, 3)
    res = _run_both(
        lambda impl, v, l, w: ms_deform_attn_core(v, shapes, l, w, impl), [value, locs, weights]
    )
    _assert_backends_agree(res, ["value", "sampling_locations", "attention_weights"])


def _randomise(attn):
    """Non-zero offset / weight linears so that sampling moves off the references and weights differ."""
    g = torch.Generator().manual_seed(2)
    for name, p in attn.named_parameters():
        if "sampling_offsets" in name or "attention_weights" in name:
            with torch.no_grad():
                p.add_(torch.randn(p.shape, generator=g) * (0.3 if p.dim() > 1 else 1.0))
    return attn.eval()


def _module_grads(attn):
    return [
        p for n, p in attn.named_parameters() if "sampling_offsets" in n or "attention_weights" in n
    ]


def _run_module_both(attn, call, tensors):
    """Like _run_both, plus the gradients of the module's offset / weight linears (locations, weights)."""
    res = {}
    for impl in ("pytorch", "kernel"):
        attn.msda_impl = impl
        attn.zero_grad()
        xs = [t.detach().clone().requires_grad_(True) for t in tensors]
        out = call(*xs)
        proj = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
        (out * proj).sum().backward()
        res[impl] = (
            out.detach(),
            [x.grad for x in xs] + [p.grad.clone() for p in _module_grads(attn)],
        )
    return res


def _padded_mask(n_frames, shapes, valid_hw):
    """(n_frames, S) bool: True outside each frame's valid (h, w) fraction at every level."""
    masks = []
    for fh, fw in valid_hw:
        per_level = []
        for h, w in shapes.tolist():
            m = torch.ones(h, w, dtype=torch.bool)
            m[: max(1, round(h * fh)), : max(1, round(w * fw))] = False
            per_level.append(m.flatten())
        masks.append(torch.cat(per_level))
    assert len(masks) == n_frames
    return torch.stack(masks)


SHAPES = torch.tensor([(8, 10), (4, 5), (2, 3)])
S = int(SHAPES.prod(1).sum())


@needs_kernel
def test_encoder_attention_kernel_equals_pytorch_with_padding():
    torch.manual_seed(0)
    attn = _randomise(
        MSDeformAttn(embed_dim=16, num_heads=2, num_levels=3, num_points=3, dropout=0.0)
    )
    mask = _padded_mask(
        2, SHAPES, [(1.0, 1.0), (0.6, 0.8)]
    )  # two frames of different sizes, padded alike
    query, pos, refs = torch.randn(2, S, 16), torch.randn(2, S, 16), torch.rand(2, S, 3, 2)
    res = _run_module_both(attn, lambda q, r: attn(q, pos, q, r, SHAPES, mask), [query, refs])
    _assert_backends_agree(
        res,
        [
            "query/value",
            "reference_points",
            "sampling_offsets.weight",
            "sampling_offsets.bias",
            "attention_weights.weight",
            "attention_weights.bias",
        ],
    )


@needs_kernel
def test_pose_attention_kernel_equals_pytorch_with_padding():
    torch.manual_seed(0)
    attn = _randomise(
        PoseAwareAttention(
            num_frames=3, embed_dim=16, num_heads=2, num_levels=3, num_keypoints=4, dropout=0.0
        )
    )
    mask = _padded_mask(6, SHAPES, [(1.0, 1.0)] * 3 + [(0.5, 0.7)] * 3).view(
        2, 3, S
    )  # clip 2 is smaller
    q, pos = torch.randn(2, 5, 16), torch.randn(2, 5, 16)
    values, poses = torch.randn(2, 3, S, 16), torch.rand(2, 3, 5, 3, 8) * 0.8 + 0.1
    res = _run_module_both(attn, lambda v, p: attn(q, pos, v, p, SHAPES, mask), [values, poses])
    _assert_backends_agree(res, ["values", "reference_poses"] + [f"linear {i}" for i in range(12)])


@needs_kernel
@pytest.mark.parametrize("grouped", [False, True], ids=["per_person", "value_index"])
def test_joint_attention_kernel_equals_pytorch_with_padding(grouped):
    torch.manual_seed(0)
    attn = _randomise(
        MultiFrameDeformAttn(
            num_frames=3, embed_dim=16, num_heads=2, num_levels=3, num_points=2, dropout=0.0
        )
    )
    mask = _padded_mask(6, SHAPES, [(1.0, 1.0)] * 3 + [(0.5, 0.7)] * 3).view(2, 3, S)
    clip = torch.tensor([1, 0, 1, 1])
    q, pos = torch.randn(4, 6, 16), torch.randn(4, 6, 16)
    values, refs = torch.randn(2, 3, S, 16), torch.rand(4, 3, 6, 3, 2)
    if grouped:
        call = lambda v, r: attn(q, pos, v, r, SHAPES, mask, value_index=clip)  # noqa: E731
    else:
        call = lambda v, r: attn(q, pos, v[clip], r, SHAPES, mask[clip])  # noqa: E731
    res = _run_module_both(attn, call, [values, refs])
    # With the tied offset bias, the F frames' biases are one Parameter: it appears once in named_parameters.
    _assert_backends_agree(res, ["values", "reference_points"] + [f"linear {i}" for i in range(12)])


@needs_kernel
def test_whole_model_kernel_equals_pytorch_on_a_padded_batch():
    """Two clips of different sizes in one batch (padding masks): eval keypoints, training losses and every
    parameter's gradient agree between the backends.

    At initialisation the sampling points sit exactly on pixel centres (proposal grids, ring offsets of whole
    pixels), where bilinear interpolation has a kink: there the two backends round x * w - 0.5 differently
    and take the left or the right derivative (both valid). The head's weights are perturbed so that no
    point sits on a kink."""
    torch.manual_seed(0)
    model = build_model(
        _tiny_cfg("MODEL.PAVENET.MSDA_IMPL", "pytorch", "MODEL.PAVENET.DROPOUT", 0.0)
    )
    with torch.no_grad():
        for p in model.head.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    batch = [_clip(96, 128, seed=1), _clip(80, 112, n=3, seed=2)]
    outs, res = {}, {}
    model.eval()
    for impl in ("pytorch", "kernel"):
        msda_backend.set_msda_impl(model, impl, log=False)
        with torch.no_grad():
            outs[impl] = model(batch)
    model.train()  # after both evals: a training forward may update normalisation statistics
    for impl in ("pytorch", "kernel"):
        msda_backend.set_msda_impl(model, impl, log=False)
        model.zero_grad()
        torch.manual_seed(3)  # the same random draws (if any) in both training forwards
        losses = model(batch)
        sum(losses.values()).backward()
        res[impl] = (
            losses,
            {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None},
        )
    out_p, out_k = outs["pytorch"], outs["kernel"]
    (loss_p, grad_p), (loss_k, grad_k) = res["pytorch"], res["kernel"]
    for a, b in zip(out_p, out_k):
        torch.testing.assert_close(b["instances"].scores, a["instances"].scores, **OUT_TOL)
        torch.testing.assert_close(
            b["instances"].pred_keypoints, a["instances"].pred_keypoints, rtol=1e-5, atol=1e-3
        )
    assert loss_p.keys() == loss_k.keys()
    for k in loss_p:
        torch.testing.assert_close(loss_k[k], loss_p[k], rtol=1e-4, atol=1e-5, msg=k)
    assert grad_p.keys() == grad_k.keys() and len(grad_p) > 100
    for n in grad_p:
        scale = float(grad_p[n].abs().max())
        diff = float((grad_k[n] - grad_p[n]).abs().max())
        assert diff <= 1e-4 * max(scale, 1e-3), (
            f"{n}: max |grad diff| {diff:.3g} (max |grad| {scale:.3g})"
        )
