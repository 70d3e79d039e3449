"""PAVENet meta-architecture: official parameter count / names, a tiny train step, batched eval, no NMS."""

import copy

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.structures import Instances, Keypoints

import pavenet.modeling  # noqa: F401
from pavenet.config import add_pavenet_config
from pavenet.conversion.official import convert_official_state_dict

from conftest import REPO_ROOT


def _cfg(tiny=True, **over):
    cfg = add_pavenet_config(get_cfg())
    cfg.merge_from_file(
        str(
            REPO_ROOT / "configs" / ("synthetic/pavenet_tiny.yaml" if tiny else "Base-PAVENet.yaml")
        )
    )
    cfg.MODEL.DEVICE = "cpu"
    cfg.merge_from_list([x for item in over.items() for x in item])
    return cfg


def _read_keys(path):
    import json

    out = {}
    for line in open(path):
        s = line.strip()
        if s and not s.startswith("#"):
            name, shape = s.split(None, 1)
            out[name] = tuple(json.loads(shape))
    return out


def test_r50_f3_matches_official_count_and_names(official_keys_file):
    model = build_model(_cfg(tiny=False))
    frozen_bn = sum(
        b.numel()
        for n, b in model.named_buffers()
        if n.startswith("backbone") and n.endswith(("norm.weight", "norm.bias"))
    )
    fc_hm = sum(b.numel() for n, b in model.named_buffers() if "fc_hm" in n)
    total = sum(p.numel() for p in model.parameters()) + frozen_bn + fc_hm
    # As official, the joint offset biases are F Parameters over one storage, each counted (2 x 3 x 256).
    assert total == 50_951_151, total
    # One-to-one: every official tensor (minus num_batches_tracked) maps onto exactly one of ours, same shape.
    official = {k: torch.zeros(s) for k, s in _read_keys(official_keys_file).items()}
    ours = model.state_dict()
    converted = convert_official_state_dict(
        official, arch="pavenet", num_frames=3, target_state_dict=ours
    )
    assert set(converted) == set(ours)
    assert all(tuple(converted[k].shape) == tuple(ours[k].shape) for k in ours)
    assert sum(1 for k in official if not k.endswith("num_batches_tracked")) == len(ours)
    names = set(ours)
    assert "head.transformer.decoder.layers.1.attentions.1.pre_attention_weights.bias" in names
    assert "head.transformer.encoder.layers.0.attentions.0.sampling_offsets.weight" in names


def test_r50_f5_names_and_size():
    model = build_model(_cfg(tiny=False, **{"MODEL.PAVENET.NUM_FRAMES": 5}))
    names = set(model.state_dict())
    for n in (
        "head.transformer.decoder.layers.0.attentions.1.pre_pre_sampling_offsets.weight",
        "head.transformer.refine_decoder.layers.1.attentions.1.next_next_attention_weights.bias",
        "head.next_next_kpt_branches.2.6.weight",
        "head.pre_pre_refine_kpt_branches.1.4.bias",
    ):
        assert n in names, n
    total = sum(
        t.numel()
        for n, t in model.state_dict().items()
        if "running_" not in n and "flow.mask" not in n
    )
    assert abs(total - 58.1e6) <= 0.01 * 58.1e6, total


def _clip(h, w, n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    d = {
        "images": torch.randint(0, 256, (3, 3, h, w), dtype=torch.uint8, generator=g),
        "height": h,
        "width": w,
    }
    inst = Instances((h, w))
    kp = torch.rand(n, 15, 3, generator=g) * torch.tensor([w, h, 1.0])
    kp[..., 2] = 2
    kp[0, :3, 2] = 0  # some unlabelled joints
    inst.gt_keypoints = Keypoints(kp)
    inst.gt_areas = torch.full((n,), 0.3 * h * w)
    inst.gt_classes = torch.zeros(n, dtype=torch.long)
    d["instances"] = inst
    return d


def test_tiny_train_step_finite_losses_and_every_param_gets_a_gradient():
    torch.manual_seed(0)
    model = build_model(_cfg()).train()
    losses = model([_clip(96, 128, seed=1), _clip(80, 112, n=3, seed=2)])
    expected = {
        "loss_cls_enc",
        "loss_kpt_enc",
        "loss_cls",
        "loss_kpt",
        "loss_cls_d0",
        "loss_kpt_d0",
        "loss_kpt_refine_d0",
    }
    assert expected <= set(losses), sorted(losses)
    assert all(torch.isfinite(v) for v in losses.values()), losses
    sum(losses.values()).backward()
    # Every trainable parameter is in the graph (a gradient tensor; values may be 0 at init behind zero-init
    # layers), so DDP needs no find_unused_parameters.
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, no_grad
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    # The aux-frame branches of the LAST layers only feed detached / unread references: frozen on purpose.
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith(("head.pre_", "head.next_")) for n in frozen), frozen


def test_eval_batch_of_two_sizes_is_deterministic_and_nms_free():
    torch.manual_seed(0)
    model = build_model(_cfg(**{"MODEL.PAVENET.TEST.TOPK": 7})).eval()
    a, b = _clip(96, 128, seed=3), _clip(80, 112, seed=4)
    a["height"], a["width"] = 192, 256  # outputs are rescaled to the original size
    with torch.no_grad():
        out1 = model([a, b])
        out2 = model([copy.deepcopy(a), copy.deepcopy(b)])
    for o, (h, w) in zip(out1, [(192, 256), (80, 112)]):
        inst = o["instances"]
        assert inst.image_size == (h, w)
        assert inst.pred_keypoints.shape == (7, 15, 3)  # exactly TOPK rows: no NMS, no threshold
        assert inst.pred_frame_keypoints.shape == (7, 3, 15, 2)
        assert inst.scores.shape == (7,) and bool((inst.scores[:-1] >= inst.scores[1:]).all())
        assert inst.pred_boxes.tensor.shape == (7, 4) and (inst.pred_classes == 0).all()
        xy = inst.pred_keypoints[..., :2]
        assert (xy[..., 0] <= w + 1e-3).all() and (xy[..., 1] <= h + 1e-3).all() and (xy >= 0).all()
        assert torch.equal(inst.pred_frame_keypoints[:, 1], xy)
    for o1, o2 in zip(out1, out2):
        assert torch.equal(o1["instances"].pred_keypoints, o2["instances"].pred_keypoints)
    # A clip decoded alone gives the same result as inside a padded batch only up to padding effects, but the
    # streaming path (encode_frames + decode_clip) is exactly the eval forward:
    with torch.no_grad():
        x, hw = model.preprocess_frames(b["images"])
        alone = model.decode_clip(model.encode_frames(x, hw), hw, (80, 112))
        single = model([copy.deepcopy(b)])[0]["instances"]
    assert torch.equal(alone.pred_keypoints, single.pred_keypoints)


def test_duplicate_queries_survive_without_nms_and_oks_nms_removes_them():
    from pavenet.modeling.meta_arch import oks_nms

    model = build_model(_cfg()).eval()
    k = torch.rand(1, 15, 2).repeat(4, 1, 1)
    k[3] = torch.rand(15, 2)
    sigma = torch.full((4, 15, 2), 0.05)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    inst, post = model.postprocess(
        k, sigma, scores, k[:, None].repeat(1, 3, 1, 1), (100, 100), (100, 100)
    )
    assert len(inst) == 4  # identical poses are all kept: NMS-free by default
    keep = oks_nms(post["prenms_keypoints"][..., :2], scores, 0.45, [0.05] * 15)
    assert keep.tolist() == [0, 3]
    model.oks_nms_thresh = 0.45
    assert (
        len(
            model.postprocess(
                k, sigma, scores, k[:, None].repeat(1, 3, 1, 1), (100, 100), (100, 100)
            )[0]
        )
        == 2
    )


@pytest.mark.parametrize("frames", [1, 5])
def test_other_frame_counts_run(frames):
    model = build_model(_cfg(**{"MODEL.PAVENET.NUM_FRAMES": frames})).eval()
    d = _clip(64, 96)
    d["images"] = d["images"][:1].repeat(frames, 1, 1, 1)
    with torch.no_grad():
        inst = model([d])[0]["instances"]
    assert inst.pred_frame_keypoints.shape[1] == frames


def test_f5_joint_start_pose_follows_the_official_t2_branch():
    """docs/REFERENCE.md §16 8a: the official F=5 head recomputes the t+2 joint-decoder start pose with
    next_kpt_branches
    (default "next"); "next_next" starts from the pose decoder's own t+2 reference."""
    from pavenet.modeling.transformer import inverse_sigmoid

    models = {}
    for branch in ("next", "next_next"):
        torch.manual_seed(0)
        models[branch] = build_model(
            _cfg(**{"MODEL.PAVENET.NUM_FRAMES": 5, "MODEL.PAVENET.F5_T2_REFERENCE_BRANCH": branch})
        ).eval()
    head = models["next"].head
    with (
        torch.no_grad()
    ):  # make the t+1 and t+2 branches differ (their last layers start at 0 / equal init)
        for p in head.next_kpt_branches[-1].parameters():
            p.normal_(0, 0.1)
        models["next_next"].load_state_dict(models["next"].state_dict())
        x, hw = models["next"].preprocess_frames(_clip(64, 96)["images"][:1].repeat(5, 1, 1, 1))
        feats = models["next"].encode_frames(x, hw)
        pose = head.decode_pose(feats)
        q = torch.tensor([3, 0, 7])
        clip = torch.zeros_like(q)
        official = head.joint_init_references(pose, clip, q)
        own = models["next_next"].head.joint_init_references(pose, clip, q)
    last = pose["pose_layers"][-1]
    # frames t-2..t+1: the last pose layer's references in both variants
    assert torch.equal(official[:, :4], own[:, :4])
    assert torch.equal(own[:, 4].flatten(1), last["references"][0, 4, q])
    expect = (
        head.next_kpt_branches[-1](last["hs"][0, q])
        + inverse_sigmoid(pose["input_references"][0, 4, q])
    ).sigmoid()
    torch.testing.assert_close(official[:, 4].flatten(1), expect)
    assert not torch.allclose(official[:, 4], own[:, 4])
    with pytest.raises(ValueError, match="F5_T2_REFERENCE_BRANCH"):
        build_model(
            _cfg(**{"MODEL.PAVENET.NUM_FRAMES": 5, "MODEL.PAVENET.F5_T2_REFERENCE_BRANCH": "t2"})
        )


def test_clip_normalization_batch_gradient_is_the_mean_of_its_parts():
    """LOSS_NORMALIZATION clip: a batch of 4 clips gives the mean of the gradients of its two halves, which
    is what DDP computes when 2 processes train 2 clips each (and what 1 clip x N accumulation gives)."""
    torch.set_num_threads(1)
    cfg = _cfg(**{"MODEL.PAVENET.LOSS_NORMALIZATION": "clip", "MODEL.RESNETS.NORM": "FrozenBN"})
    model = build_model(cfg).train()
    clips = [_clip(64, 96, n=1 + i % 3, seed=i) for i in range(4)]

    def grads(batch):
        model.zero_grad()
        sum(model(batch).values()).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    whole, first, second = grads(clips), grads(clips[:2]), grads(clips[2:])
    assert set(whole) == set(first) == set(second)
    for name, g in whole.items():
        torch.testing.assert_close(
            g,
            (first[name] + second[name]) / 2,
            rtol=1e-4,
            atol=1e-6 * g.abs().max().item(),
            msg=name,
        )
