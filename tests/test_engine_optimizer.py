"""The shipped optimizer recipe equals the official one for every parameter (AdamW, lr 2e-5, weight decay
1e-4 on everything, lr x 0.1 where the OFFICIAL name contains `backbone` or `sampling_offsets`, full-model
L2 clipping at 0.1), and the joint decoder's tied offset biases keep one optimizer entry per frame."""

import json

import pytest
import torch
from detectron2.modeling import build_model

import pavenet.modeling  # noqa: F401
from pavenet.config import load_pavenet_config
from pavenet.conversion.naming import rename_official_key
from pavenet.engine.trainer import build_optimizer_param_groups, build_pavenet_optimizer

from conftest import REPO_ROOT

SHIPPED = REPO_ROOT / "configs/posetrack17/pavenet_r50_3f_pt17.yaml"


def _official_names(keys_file):
    out = {}
    for line in open(keys_file):
        s = line.strip()
        if s and not s.startswith("#"):
            name = s.split(None, 1)[0]
            ours = rename_official_key(name)
            if ours is not None:
                out[ours] = name
    return out


def official_lr_multiplier(official_name: str) -> float:
    """mmcv paramwise custom_keys of the official config: substring match on the official name;
    'reference_points' is listed too but names no parameter of PAVE-Net."""
    return 0.1 if ("backbone" in official_name or "sampling_offsets" in official_name) else 1.0


@pytest.fixture(scope="module")
def shipped():
    cfg = load_pavenet_config(str(SHIPPED), ["MODEL.DEVICE", "cpu"])
    return cfg, build_model(cfg)


def test_solver_settings_are_the_official_ones(shipped):
    cfg, model = shipped
    s = cfg.SOLVER
    assert (s.OPTIMIZER, s.BASE_LR, s.WEIGHT_DECAY, s.IMS_PER_BATCH) == ("ADAMW", 2e-5, 1e-4, 8)
    assert (
        s.CLIP_GRADIENTS.ENABLED,
        s.CLIP_GRADIENTS.CLIP_TYPE,
        s.CLIP_GRADIENTS.CLIP_VALUE,
        s.CLIP_GRADIENTS.NORM_TYPE,
    ) == (True, "full_model", 0.1, 2.0)
    assert s.WARMUP_ITERS == 0 and cfg.MODEL.PAVENET.LOSS_NORMALIZATION == "clip"
    opt = build_pavenet_optimizer(cfg, model)
    assert isinstance(opt, torch.optim.AdamW)
    assert all(g["betas"] == (0.9, 0.999) and g["eps"] == 1e-8 for g in opt.param_groups)


def test_every_parameter_gets_the_official_lr_and_weight_decay(shipped, official_keys_file):
    cfg, model = shipped
    official = _official_names(official_keys_file)
    groups = build_optimizer_param_groups(cfg, model)
    lr = {n: g["lr"] for g in groups for n in g["names"]}
    wd = {n: g["weight_decay"] for g in groups for n in g["names"]}
    checked = 0
    for name, param in model.named_parameters(remove_duplicate=False):
        if not param.requires_grad:
            assert name not in lr, f"{name} is frozen but in the optimizer"
            continue
        assert name in official, f"{name} has no official counterpart"
        want = cfg.SOLVER.BASE_LR * official_lr_multiplier(official[name])
        assert lr[name] == pytest.approx(want), (
            f"{name} ({official[name]}): lr {lr[name]} vs official {want}"
        )
        assert wd[name] == cfg.SOLVER.WEIGHT_DECAY, name
        checked += 1
    assert checked > 600
    # both multipliers are exercised: the backbone and all per-frame sampling offsets
    assert lr["backbone.res5.2.conv3.weight"] == pytest.approx(2e-6)
    assert lr[
        "head.transformer.decoder.layers.0.attentions.1.pre_sampling_offsets.bias"
    ] == pytest.approx(2e-6)
    assert lr["head.transformer.decoder.layers.0.attentions.1.value_proj.weight"] == pytest.approx(
        2e-5
    )


def test_trainable_set_equals_the_official_one_but_for_documented_frozen_branches(
    shipped, golden_dir
):
    """The official training (golden case meta) trains every parameter that has a gradient; ours trains the
    same set except the never-read branches (official gradient exactly zero; frozen here) and fc_hm."""
    case = golden_dir / "train_r50_f3_seed2026" / "meta.json"
    if not case.is_file():
        pytest.skip(f"training golden case not found at {case}")
    meta = json.loads(case.read_text())
    _, model = shipped
    ours = {n for n, p in model.named_parameters(remove_duplicate=False) if p.requires_grad}
    official_zero = {rename_official_key(n) for n in meta["params_with_zero_grad"]}
    assert official_zero.isdisjoint(ours)
    frozen_here = {
        n for n, p in model.named_parameters(remove_duplicate=False) if not p.requires_grad
    }
    assert official_zero <= frozen_here


def test_tied_offset_biases_are_separate_optimizer_entries(shipped):
    cfg, model = shipped
    opt = build_pavenet_optimizer(cfg, model)
    entries = [p for g in opt.param_groups for p in g["params"]]
    layer = model.head.transformer.refine_decoder.layers[0].attentions[1]
    biases = [m.bias for m in layer.offset_layers()]
    assert len({b.data_ptr() for b in biases}) == 1
    assert sum(any(e is b for e in entries) for b in biases) == 3


def _tiny_model_with_grads(seed: int):
    from pavenet.apps.quickstart import quickstart_cfg

    # A weight decay large enough that lr x decay is not lost in float32 (1 - 1e-4 * 1e-4 rounds to 1): then
    # decaying the tied storage three times before updating it differs from the loop's decay-update order.
    cfg = quickstart_cfg(
        str(REPO_ROOT / "configs/synthetic/pavenet_tiny.yaml"),
        "",
        0,
        ["SOLVER.WEIGHT_DECAY", "0.05"],
    )
    torch.manual_seed(seed)
    model = build_model(cfg)
    gen = torch.Generator().manual_seed(seed + 1)
    grads = [torch.randn(p.shape, generator=gen) for p in model.parameters()]
    return cfg, model, grads


def test_multi_tensor_step_gives_the_per_parameter_loops_weights():
    """The optimizer runs PyTorch's multi-tensor (foreach) AdamW and clip also on CPU; the tied offset biases
    (three Parameters over one storage) sit in groups of their own, in order, so three clipped steps give
    bit for bit the weights of the per-parameter loop over the plain three lr groups."""
    cfg, ours, grads = _tiny_model_with_grads(0)
    _, ref, _ = _tiny_model_with_grads(0)
    layer = ours.head.transformer.refine_decoder.layers[0].attentions[1]
    assert len({m.bias.data_ptr() for m in layer.offset_layers()}) == 1, (
        "the demo model ties its offset biases"
    )
    opt = build_pavenet_optimizer(cfg, ours)
    groups = build_optimizer_param_groups(cfg, ours)
    assert [len(g["params"]) for g in groups[-2:]] == [
        1,
        1,
    ]  # the 2nd and 3rd entries over the tied storage
    assert (
        groups[-2]["lr"]
        == groups[-1]["lr"]
        == cfg.SOLVER.BASE_LR * cfg.SOLVER.SAMPLING_OFFSET_MULTIPLIER
    )

    merged = {}
    for g in build_optimizer_param_groups(cfg, ref):  # back to one group per lr multiplier
        key = g["lr"]
        merged.setdefault(key, dict(g, params=[], names=[]))
        merged[key]["params"] += g["params"]
    ref_opt = torch.optim.AdamW(
        list(merged.values()),
        lr=cfg.SOLVER.BASE_LR,
        weight_decay=cfg.SOLVER.WEIGHT_DECAY,
        foreach=False,
    )
    ref_params = [p for g in ref_opt.param_groups for p in g["params"]]
    for step in range(3):
        for model in (ours, ref):
            for p, g in zip(model.parameters(), grads):
                p.grad = g * (step + 1)
        opt.step()
        torch.nn.utils.clip_grad_norm_(
            ref_params, cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE, foreach=False
        )
        ref_opt.step()
    for (name, a), b in zip(ours.state_dict().items(), ref.state_dict().values()):
        assert torch.equal(a, b), name
