"""Eval decoding's caches and shortcuts give the outputs of the plain computation:

* `EncodedFrames.values`: every decoder layer's `value_proj` maps, computed once per frame at encode time,
  equal the layer's own projection, and streaming computes them once per frame (not once per window);
* a window passed as the list of its F per-frame encodings == the concatenated EncodedFrames ==
  decoding from the memory alone (values recomputed);
* the lean eval decode (query-selection branches on the selected tokens only, no unread outputs) ==
  the full decode (`return_intermediates=True`, what the golden test reads);
* the eval forward decodes a batch of clips together == each clip decoded on its own.
"""

import dataclasses

import pytest
import torch
from detectron2.modeling import build_model
from test_demo_predictor import _video, tiny_cfg
from test_model_meta_arch import _clip

import pavenet.modeling  # noqa: F401
from pavenet.inference.predictor import ClipPredictor
from pavenet.modeling.ms_deform_attn import ms_deform_attn_core, multi_frame_deform_attn

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TOL = dict(rtol=1e-5, atol=1e-5)


def _perturbed(model):
    """Random init zeroes the offset / weight / keypoint output layers: perturb every head parameter so
    that each branch and attention changes the outputs (a wrong shortcut then shows)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.head.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model


@pytest.fixture(scope="module")
def predictor(msda_impl):
    torch.manual_seed(0)
    p = ClipPredictor(tiny_cfg("MODEL.PAVENET.MSDA_IMPL", msda_impl))
    _perturbed(p.model)
    return p


def _same(a, b, exact=False):
    assert len(a) == len(b)
    for field in ("scores", "pred_keypoints", "pred_frame_keypoints"):
        x, y = getattr(a, field), getattr(b, field)
        if exact:
            assert torch.equal(x, y), field
        else:
            torch.testing.assert_close(x, y, **TOL, msg=field)
    torch.testing.assert_close(a.pred_boxes.tensor, b.pred_boxes.tensor, **TOL)


def _encode(predictor, frames):
    prepare = predictor._make_prepare()
    out = [predictor.encode(prepare(f)) for f in frames]
    return [e for e, _ in out], out[0][1]


def test_cached_values_equal_each_layers_projection(predictor):
    model = predictor.model
    feats, _ = _encode(predictor, _video(1))
    enc = feats[0]
    attns = model.head.decoder_attentions()
    n_layers = (
        model.head.transformer.decoder.num_layers + model.head.transformer.refine_decoder.num_layers
    )
    assert len(attns) == n_layers and len(enc.values) == n_layers
    heads = attns[0].num_heads
    s, c = enc.memory.shape[1:]
    for attn, v in zip(attns, enc.values):
        assert v.shape == (1, s, heads, c // heads)
        # The training path's projection of a (B, F, S, C) clip, here one frame of it.
        ref = attn.project_values(enc.memory[:, None], enc.padding_mask[:, None])[:, 0]
        torch.testing.assert_close(v, ref, rtol=0, atol=1e-6)
    assert model.head.training is False
    # In training nothing is cached (the layers project with autograd).
    model.train()
    try:
        images, hw = model.preprocess_frames(predictor._make_prepare()(_video(1)[0])[None])
        with torch.no_grad():
            assert model.encode_frames(images).values is None
    finally:
        model.eval()


def test_stream_projects_each_frame_once_per_layer(predictor):
    """value_proj of every decoder layer sees each frame's tokens exactly once over a whole stream (it
    ran once per window that held the frame, F times, before the cache)."""
    frames = _video(5)
    rows = []
    hooks = [
        a.value_proj.register_forward_hook(
            lambda m, i, o, k=k: rows.append((k, i[0].shape[:-1].numel()))
        )
        for k, a in enumerate(predictor.model.head.decoder_attentions())
    ]
    try:
        out = list(predictor.stream(iter(frames)))
    finally:
        for h in hooks:
            h.remove()
    assert len(out) == len(frames)
    tokens = predictor.encode(predictor._make_prepare()(frames[0]))[0].memory.shape[1]
    per_layer = {}
    for k, n in rows:
        per_layer[k] = per_layer.get(k, 0) + n
    assert per_layer == {
        k: len(frames) * tokens for k in range(len(predictor.model.head.decoder_attentions()))
    }


def test_window_list_equals_concatenation_and_recomputed_values(predictor):
    model = predictor.model
    feats, hw = _encode(predictor, _video(3))
    as_list = model.decode_clip(feats, hw, (72, 100))
    cat = type(feats[0]).cat(feats)
    assert cat.values is not None and len(cat.values) == len(feats[0].values)
    _same(as_list, model.decode_clip(cat, hw, (72, 100)), exact=True)  # same maps, same calls
    # Decoding from the memory alone (values recomputed per call) gives the same result.
    bare = dataclasses.replace(cat, values=None)
    _same(as_list, model.decode_clip(bare, hw, (72, 100)))
    _same(
        as_list,
        model.decode_clip([dataclasses.replace(f, values=None) for f in feats], hw, (72, 100)),
    )
    with pytest.raises(ValueError, match="frames of one clip"):
        model.decode_clip(feats[:2], hw)
    with pytest.raises(ValueError, match="frames of one clip"):
        model.decode_clip([cat[:1], cat[:1], cat], hw)


def test_lean_decode_equals_full_decode(predictor):
    """decode_clip without intermediates skips work whose output is unread; the rows it returns are the
    full decode's. The query-selection keypoint branch then runs on the Q selected tokens, not all S."""
    model = predictor.model
    head = model.head
    feats, hw = _encode(predictor, _video(3, seed=2))
    n_dec = head.transformer.decoder.num_layers
    rows = []
    hook = head.kpt_branches[n_dec].register_forward_hook(
        lambda m, i, o: rows.append(i[0].shape[1])
    )
    try:
        lean = model.decode_clip(feats, hw, (72, 100))
        full, inter = model.decode_clip(feats, hw, (72, 100), return_intermediates=True)
    finally:
        hook.remove()
    s = feats[0].memory.shape[1]
    assert rows == [head.num_queries, s] and head.num_queries < s
    _same(lean, full)
    assert len(lean) == min(model.test_topk, head.num_queries)
    # The full decode's outputs are all there (the golden test reads them).
    assert {"keypoints", "sigma"} <= set(inter["pose"]["enc"])
    assert all(
        {"logits", "keypoints", "sigma", "references"} <= set(layer)
        for layer in inter["pose"]["pose_layers"]
    )
    # The lean dict: the joint decoder's start for the selected persons equals the full one.
    pose = head.decode_pose(head.with_values(feats), lean=True)
    assert "keypoints" not in pose["enc"] and "references" not in pose["pose_layers"][-1]
    q = inter["query_index"]
    clip = torch.zeros_like(q)
    torch.testing.assert_close(
        head.joint_init_references(pose, clip, q),
        head.joint_init_references(inter["pose"], clip, q),
        **TOL,
    )
    head.train()
    try:
        with pytest.raises(ValueError, match="lean"):
            head.decode_pose(feats, lean=True)
    finally:
        head.eval()


def test_batched_eval_forward_equals_clips_decoded_one_by_one(msda_impl):
    torch.manual_seed(0)
    model = _perturbed(build_model(tiny_cfg("MODEL.PAVENET.MSDA_IMPL", msda_impl))).eval()
    F = model.num_frames
    a, b, c = _clip(64, 96, seed=3), _clip(64, 96, seed=4), _clip(48, 80, seed=5)
    a["height"], a["width"] = 128, 192
    with torch.no_grad():
        batch = model([a, b, c])
        # The same padded encodings, decoded one clip at a time.
        images, sizes = model._batch_clips([a, b, c])
        feats = model.encode_frames(images, [s for s in sizes for _ in range(F)])
        outs = [(128, 192), (64, 96), (48, 80)]
        for i, (o, size) in enumerate(zip(batch, outs)):
            alone = model.decode_clip(feats[i * F : (i + 1) * F], sizes[i], size)
            assert o["instances"].image_size == size
            _same(o["instances"], alone)
        # A batch of one is exactly decode_clip (the streaming path).
        x, hw = model.preprocess_frames(b["images"])
        single = model([b])[0]["instances"]
        _same(single, model.decode_clip(model.encode_frames(x, hw), hw), exact=True)


def test_core_takes_per_frame_value_lists(msda_impl):
    """The samplers on a list of per-frame maps == on their concatenation (PyTorch: bit for bit)."""
    g = torch.Generator().manual_seed(0)
    shapes = torch.tensor([[6, 8], [3, 4]])
    n, q, h, d, f, lvl, p = 2, 5, 2, 4, 3, 2, 3
    s = int(shapes.prod(1).sum())
    values = torch.randn(n, f, s, h, d, generator=g)
    locs = torch.rand(n, q, h, f, lvl, p, 2, generator=g)
    logits = torch.randn(n, q, h, f, lvl, p, generator=g)
    ref = multi_frame_deform_attn(values, shapes, locs, logits, msda_impl)
    out = multi_frame_deform_attn([values[:, i] for i in range(f)], shapes, locs, logits, msda_impl)
    if msda_impl == "pytorch":
        assert torch.equal(out, ref)
        w = torch.rand(n, q, h, f * lvl, p, generator=g)
        cat_locs = locs.reshape(n, q, h, f * lvl, p, 2)
        flat = ms_deform_attn_core(values.reshape(n, f * s, h, d), shapes.repeat(f, 1), cat_locs, w)
        assert torch.equal(
            ms_deform_attn_core([values[:, i] for i in range(f)], shapes.repeat(f, 1), cat_locs, w),
            flat,
        )
        with pytest.raises(ValueError, match="whole levels"):
            ms_deform_attn_core([values[:, 0, :40]], shapes, locs[:, :, :, 0], w[:, :, :, :lvl])
    else:
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
