"""Deformable attention: grid_sample core vs a naive per-point bilinear loop, and the multi-frame form
(frames as extra levels, one softmax) vs the official per-frame loop with re-weighted softmaxes."""

import math

import pytest
import torch

from pavenet.modeling.ms_deform_attn import (
    MultiFrameDeformAttn,
    PoseAwareAttention,
    frame_prefixes,
    ms_deform_attn_core,
    multi_frame_deform_attn,
)


def _bilinear(vmap, x, y):
    """vmap (D, h, w); x, y normalised [0, 1] -> (D,) with align_corners=False and zero padding."""
    d, h, w = vmap.shape
    px, py = x * w - 0.5, y * h - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    out = torch.zeros(d, dtype=torch.float64)
    for yy, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
        for xx, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
            if 0 <= yy < h and 0 <= xx < w:
                out += float(wx * wy) * vmap[:, yy, xx].double()
    return out


def _naive(value, shapes, locs, weights):
    n, s, nh, d = value.shape
    _, q, _, nl, p, _ = locs.shape
    starts = [0]
    for h, w in shapes[:-1]:
        starts.append(starts[-1] + h * w)
    out = torch.zeros(n, q, nh * d, dtype=torch.float64)
    for b in range(n):
        for qi in range(q):
            for hh in range(nh):
                acc = torch.zeros(d, dtype=torch.float64)
                for lv, (h, w) in enumerate(shapes):
                    vmap = value[b, starts[lv] : starts[lv] + h * w, hh].T.reshape(d, h, w)
                    for pi in range(p):
                        x, y = locs[b, qi, hh, lv, pi]
                        acc += float(weights[b, qi, hh, lv, pi]) * _bilinear(
                            vmap, float(x), float(y)
                        )
                out[b, qi, hh * d : (hh + 1) * d] = acc
    return out


def test_core_matches_naive_bilinear_loop():
    shapes = [(5, 7), (3, 4)]
    s = sum(h * w for h, w in shapes)
    value = torch.randn(2, s, 2, 3)
    locs = torch.rand(2, 4, 2, 2, 3, 2) * 1.4 - 0.2  # some points outside the map (zero padding)
    weights = torch.rand(2, 4, 2, 2, 3)
    ours = ms_deform_attn_core(value, torch.tensor(shapes), locs, weights)
    assert torch.allclose(ours.double(), _naive(value, shapes, locs, weights), atol=1e-5)


def test_multi_frame_equals_official_per_frame_loop():
    """Official: per-frame softmax over L*P, per-frame outputs re-weighted by exp-sum_f / sum exp-sums."""
    n, q, nh, f, nl, p, d = 2, 5, 4, 3, 2, 3, 4
    shapes = torch.tensor([(6, 5), (3, 3)])
    s = int(shapes.prod(1).sum())
    values = torch.randn(n, f, s, nh, d)
    locs = torch.rand(n, q, nh, f, nl, p, 2)
    logits = torch.randn(n, q, nh, f, nl, p) * 3
    ours = multi_frame_deform_attn(values, shapes, locs, logits)
    ref = 0
    flat = logits.reshape(n, q, nh, f, nl * p)
    sums = flat.exp().sum(-1, keepdim=True)  # (n, q, nh, f, 1)
    total = sums.sum(3)
    for fi in range(f):
        w = flat[:, :, :, fi].softmax(-1).view(n, q, nh, nl, p)
        out_f = ms_deform_attn_core(values[:, fi], shapes, locs[:, :, :, fi], w).view(n, q, nh, d)
        ref = ref + out_f * (sums[:, :, :, fi] / total)
    assert torch.allclose(ours, ref.flatten(2), atol=1e-5)
    # ... and stays finite where the official exp-sum overflows (docs/REFERENCE.md §16 8c)
    big = multi_frame_deform_attn(values, shapes, locs, logits + 200.0)
    assert torch.isfinite(big).all() and torch.allclose(big, ours, atol=1e-5)


def test_frame_prefixes_and_official_attribute_names():
    assert frame_prefixes(1) == [""]
    assert frame_prefixes(3) == ["pre_", "", "next_"]
    assert frame_prefixes(5) == ["pre_pre_", "pre_", "", "next_", "next_next_"]
    names = {
        n
        for n, _ in PoseAwareAttention(
            num_frames=5, embed_dim=32, num_heads=4, num_keypoints=3
        ).named_parameters()
    }
    assert (
        "pre_pre_sampling_offsets.weight" in names and "next_next_attention_weights.bias" in names
    )


def test_pose_attention_init_samples_the_reference_keypoints():
    """Zero-init offsets/weights: sampling sits exactly on each frame's reference keypoints, uniform weights."""
    torch.manual_seed(0)
    attn = PoseAwareAttention(
        num_frames=3, embed_dim=16, num_heads=2, num_levels=1, num_keypoints=2, dropout=0.0
    ).eval()
    shapes = torch.tensor([(4, 4)])
    values = torch.randn(1, 3, 16, 16)
    refs = torch.rand(1, 3, 1, 1, 4) * 0.8 + 0.1  # (N, F, Q, L, 2K)
    q = torch.randn(1, 1, 16)
    out = attn(q, torch.zeros_like(q), values, refs, shapes)
    v = attn.value_proj(values).view(1, 3, 16, 2, 8)
    locs = (
        refs.view(1, 3, 1, 2, 2)
        .permute(0, 2, 1, 3, 4)[:, :, None, :, None]
        .expand(1, 1, 2, 3, 1, 2, 2)
    )
    expect = ms_deform_attn_core(
        v.reshape(1, 48, 2, 8),
        [(4, 4)] * 3,
        locs.reshape(1, 1, 2, 3, 2, 2),
        torch.full((1, 1, 2, 3, 2), 1 / 6),
    )
    assert torch.allclose(out, q + attn.output_proj(expect), atol=1e-5)


def test_joint_attention_grouped_by_clip_equals_per_person():
    torch.manual_seed(0)
    attn = MultiFrameDeformAttn(
        num_frames=3, embed_dim=16, num_heads=2, num_levels=2, num_points=2, dropout=0.0
    ).eval()
    for m in attn.offset_layers() + attn.weight_layers():
        torch.nn.init.normal_(m.weight, std=0.1)
    shapes = torch.tensor([(4, 5), (2, 3)])
    values = torch.randn(2, 3, 26, 16)
    q, pos = torch.randn(5, 4, 16), torch.randn(5, 4, 16)
    refs = torch.rand(5, 3, 4, 2, 2)
    clip = torch.tensor([1, 0, 1, 1, 0])
    grouped = attn(q, pos, values, refs, shapes, value_index=clip)
    per_person = attn(q, pos, values[clip], refs, shapes)
    assert torch.allclose(grouped, per_person, atol=1e-5)


def test_sampling_is_mirror_consistent():
    """Flipping every level's value map left-right and mirroring the sampling x (x -> 1 - x) samples the
    same values: pins the (x, y) order and the align_corners=False pixel-centre convention that the
    keypoint flip of the clip mapper relies on."""
    from pavenet.modeling.ms_deform_attn import ms_deform_attn_core

    torch.manual_seed(0)
    shapes = [(6, 9), (3, 5)]
    n, q, h, d, p = 2, 7, 2, 4, 3
    maps = [torch.randn(n, h, d, hh, ww) for hh, ww in shapes]

    def to_tokens(ms):  # (N, H, D, h, w) per level -> (N, S, H, D)
        return torch.cat([m.flatten(3).permute(0, 3, 1, 2) for m in ms], 1)

    loc = torch.rand(n, q, h, len(shapes), p, 2)
    weights = torch.rand(n, q, h, len(shapes), p).softmax(-1)
    out = ms_deform_attn_core(to_tokens(maps), shapes, loc, weights)
    mirrored_loc = loc.clone()
    mirrored_loc[..., 0] = 1 - loc[..., 0]
    out_flipped = ms_deform_attn_core(
        to_tokens([m.flip(-1) for m in maps]), shapes, mirrored_loc, weights
    )
    torch.testing.assert_close(out_flipped, out, rtol=1e-5, atol=1e-6)
    # Mirroring y instead (a swapped x/y convention) must not agree.
    wrong_loc = loc.clone()
    wrong_loc[..., 1] = 1 - loc[..., 1]
    wrong = ms_deform_attn_core(to_tokens([m.flip(-1) for m in maps]), shapes, wrong_loc, weights)
    assert not torch.allclose(wrong, out, atol=1e-3)


def _joint_attn(offset_bias):
    return MultiFrameDeformAttn(
        num_frames=5,
        embed_dim=16,
        num_heads=2,
        num_levels=2,
        num_points=2,
        dropout=0.0,
        offset_bias=offset_bias,
    )


def _joint_attn_inputs():
    g = torch.Generator().manual_seed(3)
    return (
        torch.randn(1, 3, 16, generator=g),
        torch.randn(1, 3, 16, generator=g),
        torch.randn(1, 5, 4 * 4 + 2 * 2, 16, generator=g),
        torch.tensor([[4, 4], [2, 2]]),
        torch.rand(1, 5, 3, 2, 2, generator=g),
    )


def test_joint_offset_bias_modes_load_like_the_official_model():
    """Shared storage / shared Parameter: a checkpoint load leaves the last frame's value in every frame's
    sampling_offsets.bias (as the official model); independent: each frame keeps its own."""
    names = [p + "sampling_offsets.bias" for p in frame_prefixes(5)]
    new = {k: torch.randn_like(v) for k, v in _joint_attn("independent").state_dict().items()}
    for mode in ("shared_storage", "shared_parameter", "independent"):
        attn = _joint_attn(mode)
        assert all(n in attn.state_dict() for n in names)  # the official names stay, one per frame
        attn.load_state_dict(new)
        for n in names:
            want = new[n] if mode == "independent" else new["next_next_sampling_offsets.bias"]
            assert torch.equal(attn.state_dict()[n], want), (mode, n)
    with pytest.raises(ValueError, match="JOINT_OFFSET_BIAS"):
        _joint_attn("tied")


def test_joint_offset_bias_shared_storage_is_official_f_parameters_over_one_tensor():
    """Official: F Parameter objects over ONE storage: each gets its own frame's gradient (not the sum);
    the shared-Parameter mode gets the sum; both start from and write to one tensor."""
    storage = _joint_attn("shared_storage")
    biases = [m.bias for m in storage.offset_layers()]
    assert len({id(b) for b in biases}) == 5 and len({b.data_ptr() for b in biases}) == 1
    assert sum(1 for n, _ in storage.named_parameters() if n.endswith("sampling_offsets.bias")) == 5
    param = _joint_attn("shared_parameter")
    assert all(m.bias is param.offset_layers()[0].bias for m in param.offset_layers())
    assert sum(1 for n, _ in param.named_parameters() if n.endswith("sampling_offsets.bias")) == 1

    q, pos, values, shapes, refs = _joint_attn_inputs()
    param.load_state_dict(storage.state_dict())
    storage(q, pos, values, refs, shapes).sum().backward()
    param(q, pos, values, refs, shapes).sum().backward()
    per_frame = []
    for f in range(
        5
    ):  # frame f's contribution alone: an independent copy, gradient of frame f's bias
        one = _joint_attn("independent")
        one.load_state_dict(storage.state_dict())
        one(q, pos, values, refs, shapes).sum().backward()
        per_frame.append(one.offset_layers()[f].bias.grad)
    for f in range(5):
        torch.testing.assert_close(biases[f].grad, per_frame[f])
    torch.testing.assert_close(param.offset_layers()[0].bias.grad, torch.stack(per_frame).sum(0))
    # one in-place update of one frame's Parameter moves every frame's view of the storage
    with torch.no_grad():
        biases[0].add_(1.0)
    assert all(torch.equal(b, biases[0]) for b in biases)


def test_joint_offset_bias_storage_splits_on_conversion_like_pytorch_does():
    """Converting the module (as model.cuda() does for the official GPU training) gives every Parameter a
    tensor of its own: from then on the frames' biases train independently, starting equal."""
    attn = _joint_attn("shared_storage").double()
    biases = [m.bias for m in attn.offset_layers()]
    assert len({b.data_ptr() for b in biases}) == 5
    assert all(torch.equal(b, biases[-1]) for b in biases)
    with torch.no_grad():
        biases[0].add_(1.0)
    assert not torch.equal(biases[0], biases[1])
    shared = _joint_attn("shared_parameter").double()
    assert all(m.bias is shared.offset_layers()[0].bias for m in shared.offset_layers())
