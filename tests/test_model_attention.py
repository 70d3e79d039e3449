"""Deformable attention: grid_sample core vs a naive per-point bilinear loop, and the multi-frame form
(frames as extra levels, one softmax) vs the official per-frame loop with re-weighted softmaxes."""
import math

import torch

from pavenet.modeling.ms_deform_attn import (MultiFrameDeformAttn, PoseAwareAttention, frame_prefixes,
                                             ms_deform_attn_core, multi_frame_deform_attn)


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
                    vmap = value[b, starts[lv]:starts[lv] + h * w, hh].T.reshape(d, h, w)
                    for pi in range(p):
                        x, y = locs[b, qi, hh, lv, pi]
                        acc += float(weights[b, qi, hh, lv, pi]) * _bilinear(vmap, float(x), float(y))
                out[b, qi, hh * d:(hh + 1) * d] = acc
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
    # ... and stays finite where the official exp-sum overflows (spec §16 8c)
    big = multi_frame_deform_attn(values, shapes, locs, logits + 200.0)
    assert torch.isfinite(big).all() and torch.allclose(big, ours, atol=1e-5)


def test_frame_prefixes_and_official_attribute_names():
    assert frame_prefixes(1) == [""]
    assert frame_prefixes(3) == ["pre_", "", "next_"]
    assert frame_prefixes(5) == ["pre_pre_", "pre_", "", "next_", "next_next_"]
    names = {n for n, _ in PoseAwareAttention(num_frames=5, embed_dim=32, num_heads=4, num_keypoints=3).named_parameters()}
    assert "pre_pre_sampling_offsets.weight" in names and "next_next_attention_weights.bias" in names


def test_pose_attention_init_samples_the_reference_keypoints():
    """Zero-init offsets/weights: sampling sits exactly on each frame's reference keypoints, uniform weights."""
    torch.manual_seed(0)
    attn = PoseAwareAttention(num_frames=3, embed_dim=16, num_heads=2, num_levels=1, num_keypoints=2, dropout=0.0).eval()
    shapes = torch.tensor([(4, 4)])
    values = torch.randn(1, 3, 16, 16)
    refs = torch.rand(1, 3, 1, 1, 4) * 0.8 + 0.1  # (N, F, Q, L, 2K)
    q = torch.randn(1, 1, 16)
    out = attn(q, torch.zeros_like(q), values, refs, shapes)
    v = attn.value_proj(values).view(1, 3, 16, 2, 8)
    locs = refs.view(1, 3, 1, 2, 2).permute(0, 2, 1, 3, 4)[:, :, None, :, None].expand(1, 1, 2, 3, 1, 2, 2)
    expect = ms_deform_attn_core(v.reshape(1, 48, 2, 8), [(4, 4)] * 3, locs.reshape(1, 1, 2, 3, 2, 2),
                                 torch.full((1, 1, 2, 3, 2), 1 / 6))
    assert torch.allclose(out, q + attn.output_proj(expect), atol=1e-5)


def test_joint_attention_grouped_by_clip_equals_per_person():
    torch.manual_seed(0)
    attn = MultiFrameDeformAttn(num_frames=3, embed_dim=16, num_heads=2, num_levels=2, num_points=2, dropout=0.0).eval()
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
    out_flipped = ms_deform_attn_core(to_tokens([m.flip(-1) for m in maps]), shapes, mirrored_loc, weights)
    torch.testing.assert_close(out_flipped, out, rtol=1e-5, atol=1e-6)
    # Mirroring y instead (a swapped x/y convention) must not agree.
    wrong_loc = loc.clone()
    wrong_loc[..., 1] = 1 - loc[..., 1]
    wrong = ms_deform_attn_core(to_tokens([m.flip(-1) for m in maps]), shapes, wrong_loc, weights)
    assert not torch.allclose(wrong, out, atol=1e-3)


def test_joint_offset_bias_tie_follows_the_official_shared_storage():
    """Official: every frame's joint sampling_offsets.bias is one storage, so they train as one bias and a
    checkpoint load leaves the last frame's value in all of them. Untied: F independent biases."""
    tied = MultiFrameDeformAttn(num_frames=5, embed_dim=16, num_heads=2, num_levels=2, num_points=2, dropout=0.0)
    biases = [m.bias for m in tied.offset_layers()]
    assert all(b is biases[0] for b in biases)
    sd = tied.state_dict()
    names = [p + "sampling_offsets.bias" for p in frame_prefixes(5)]
    assert all(n in sd for n in names)  # the official names stay, one per frame
    new = {k: torch.randn_like(v) for k, v in sd.items()}
    tied.load_state_dict(new)
    for n in names:
        assert torch.equal(tied.state_dict()[n], new["next_next_sampling_offsets.bias"]), n
    assert sum(1 for n, _ in tied.named_parameters() if n.endswith("sampling_offsets.bias")) == 1

    untied = MultiFrameDeformAttn(num_frames=5, embed_dim=16, num_heads=2, num_levels=2, num_points=2, dropout=0.0,
                                  tie_offset_bias=False)
    untied.load_state_dict(new)
    for n in names:
        assert torch.equal(untied.state_dict()[n], new[n]), n
    # every frame's offsets reach the shared bias's gradient
    q, pos = torch.randn(1, 3, 16), torch.randn(1, 3, 16)
    values = torch.randn(1, 5, 4 * 4 + 2 * 2, 16)
    shapes = torch.tensor([[4, 4], [2, 2]])
    refs = torch.rand(1, 5, 3, 2, 2)
    tied(q, pos, values, refs, shapes).sum().backward()
    g = biases[0].grad
    grads = []
    for f in range(5):
        one = MultiFrameDeformAttn(num_frames=5, embed_dim=16, num_heads=2, num_levels=2, num_points=2, dropout=0.0,
                                   tie_offset_bias=False)
        one.load_state_dict(tied.state_dict())
        one(q, pos, values, refs, shapes).sum().backward()
        grads.append(one.offset_layers()[f].bias.grad)
    torch.testing.assert_close(g, torch.stack(grads).sum(0))
