"""SOLVER.AMP.ENABLED: mixed-precision training on the CPU (bf16 autocast, no GradScaler), losses and
matching in float32, and an eval under autocast within a stated tolerance of float32."""

import pytest
import torch
from detectron2.modeling import build_model
from test_msda_backends import _clip
from test_msda_backends import _tiny_cfg as _model_cfg
from test_train_e2e import _tiny_cfg, _train_and_record, synthetic_root  # noqa: F401  (fixture)

from pavenet.engine.amp import AMPTrainer, amp_dtype

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_amp_dtype_per_device():
    cfg = _model_cfg("SOLVER.AMP.ENABLED", True)
    assert amp_dtype(cfg) == torch.bfloat16  # CPU: bf16, no scaler
    cfg.MODEL.DEVICE = "cuda"
    assert amp_dtype(cfg) == torch.float16  # CUDA: fp16 + GradScaler
    cfg.SOLVER.AMP.DTYPE = "bfloat16"
    assert amp_dtype(cfg) == torch.bfloat16
    cfg.MODEL.DEVICE, cfg.SOLVER.AMP.DTYPE = "cpu", "float16"
    with pytest.raises(ValueError, match="SOLVER.AMP.DTYPE"):
        amp_dtype(cfg)
    cfg.SOLVER.AMP.DTYPE = "half"
    with pytest.raises(ValueError, match="SOLVER.AMP.DTYPE"):
        amp_dtype(cfg)


def _amp_cfg(out_dir, max_iter, synthetic_root, *opts):  # noqa: F811
    """The tiny training config under SOLVER.AMP on small frames (bf16 matmuls are ~7x slower than float32 on
    CPUs without bf16 units)."""
    cfg = _tiny_cfg(out_dir, max_iter, synthetic_root)
    amp = ["SOLVER.AMP.ENABLED", True, "SOLVER.IMS_PER_BATCH", 2, "INPUT.MIN_SIZE_TRAIN", (96,)]
    cfg.merge_from_list([*amp, "INPUT.MAX_SIZE_TRAIN", 128, *opts])
    return cfg


def test_amp_trains_on_cpu_in_bf16_with_float32_losses(tmp_path, synthetic_root):  # noqa: F811
    """The Trainer picks our AMPTrainer, the network runs in bf16, the losses are float32 and finite, and
    the weights move. (Small frames: bf16 matmuls are ~7x slower than float32 on CPUs without bf16 units.)"""
    cfg = _amp_cfg(tmp_path, 3, synthetic_root)
    seen = {"linear_dtypes": set(), "loss_dtypes": set(), "trainer": None}
    from detectron2.engine import HookBase

    from pavenet.engine import Trainer

    class Spy(HookBase):
        def before_train(self):
            seen["trainer"] = self.trainer._trainer
            model = self.trainer.model
            seen["init"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
            lin = model.head.transformer.decoder.layers[0].ffns[0].layers[1]
            lin.register_forward_hook(lambda m, i, o: seen["linear_dtypes"].add(o.dtype))
            crit = model.criterion
            crit.register_forward_hook(
                lambda m, i, o: seen["loss_dtypes"].update(v.dtype for v in o.values())
            )

    orig_build_hooks = Trainer.build_hooks
    Trainer.build_hooks = lambda self: orig_build_hooks(self) + [Spy()]
    try:
        losses, state = _train_and_record(cfg)
    finally:
        Trainer.build_hooks = orig_build_hooks
    assert isinstance(seen["trainer"], AMPTrainer) and seen["trainer"].grad_scaler is None
    assert seen["trainer"].dtype == torch.bfloat16
    assert seen["linear_dtypes"] == {torch.bfloat16}, "autocast was not active in the forward"
    assert seen["loss_dtypes"] == {torch.float32}, "the losses must be computed in float32"
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses))), losses
    moved = [
        k for k, v in state.items() if v.is_floating_point() and not torch.equal(v, seen["init"][k])
    ]
    assert any("head.transformer.encoder" in k for k in moved) and any(
        k.startswith("backbone") for k in moved
    )
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


class _FixedSelection(torch.nn.Module):
    """Encoder scores as a steep ramp over the tokens. With random weights, the encoder's top-k scores are
    near-ties that bf16 rounding reorders, and the decoders then follow other tokens; a trained model
    separates them. Pinning the selection makes the comparison measure precision, not tie-breaking."""

    def forward(self, e):
        b, s, _ = e.shape
        return torch.linspace(5, -5, s, device=e.device).view(1, s, 1).expand(b, s, 1)


def test_eval_under_autocast_is_close_to_float32(msda_impl):
    """Stated tolerance on a 96x128 clip: keypoints within 0.5 px of float32 (measured 0.07 px), keypoint
    scores within 1e-3 (measured 3e-5); outputs are float32 in both cases."""
    torch.manual_seed(0)
    model = build_model(
        _model_cfg("MODEL.PAVENET.MSDA_IMPL", msda_impl, "MODEL.PAVENET.TEST.TOPK", 30)
    ).eval()
    with torch.no_grad():
        for p in model.head.parameters():  # away from the zero-init layers' exact symmetries
            p.add_(torch.randn_like(p) * 0.02)
    model.head.cls_branches[model.head.transformer.decoder.num_layers] = _FixedSelection()
    x, hw = model.preprocess_frames(_clip(96, 128, seed=3)["images"])
    with torch.no_grad():
        ref, ref_inter = model.decode_clip(
            model.encode_frames(x, hw), hw, hw, return_intermediates=True
        )
        with torch.autocast("cpu", dtype=torch.bfloat16):
            feats = model.encode_frames(x, hw)
            amp, amp_inter = model.decode_clip(feats, hw, hw, return_intermediates=True)
    assert feats.memory.dtype == torch.bfloat16  # autocast did run
    assert amp.pred_keypoints.dtype == amp.scores.dtype == torch.float32
    # Rows are in score order; pair them by query.
    q_ref, q_amp = ref_inter["query_index"].tolist(), amp_inter["query_index"].tolist()
    assert sorted(q_ref) == sorted(q_amp) == list(range(30))
    a = ref.pred_keypoints[[q_ref.index(q) for q in range(30)]]
    b = amp.pred_keypoints[[q_amp.index(q) for q in range(30)]]
    xy_diff = float((a[..., :2] - b[..., :2]).abs().max())
    assert xy_diff <= 0.5, f"keypoints differ by {xy_diff:.3f} px under autocast"
    assert float((a[..., 2] - b[..., 2]).abs().max()) <= 1e-3
    # A wrong pairing (or no autocast effect at all) would not pass: the rows differ between queries.
    assert float((a[0, :, :2] - a[1, :, :2]).abs().max()) > 1.0
    assert xy_diff > 0, "autocast changed nothing: the comparison is vacuous"


def test_amp_checkpoint_round_trips_the_whole_training_state(tmp_path, synthetic_root):  # noqa: F811
    """A resumed AMP run gets back the iteration, optimizer, scheduler, RNG and GradScaler state on both
    detectron2 versions (v0.6's DefaultTrainer saves none of the inner loop's state). The fp16 GradScaler is
    CUDA-only in our AMP trainer; torch's CPU GradScaler, whose state_dict has the same fields, stands in."""
    from pavenet.engine import Trainer

    cfg = _amp_cfg(tmp_path, 2, synthetic_root, "SOLVER.CHECKPOINT_PERIOD", 100)
    first = Trainer(cfg)
    first._trainer.grad_scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=7)
    first.resume_or_load(resume=False)
    first.train()  # 2 steps through the scaler, then model_final (the last checkpoint)
    saved = torch.load(tmp_path / "model_final.pth", weights_only=False)
    assert saved["trainer"]["_trainer"]["grad_scaler"]["growth_interval"] == 7

    second = Trainer(cfg)
    assert isinstance(second._trainer, AMPTrainer)
    second._trainer.grad_scaler = torch.amp.GradScaler(
        "cpu"
    )  # defaults: scale 65536, growth interval 2000
    second.resume_or_load(resume=True)
    assert second.start_iter == 2 and second.iter == 1
    assert second._trainer.grad_scaler.state_dict() == first._trainer.grad_scaler.state_dict()
    assert second.scheduler.state_dict() == first.scheduler.state_dict()
    opt_a, opt_b = first.optimizer.state_dict(), second.optimizer.state_dict()
    assert (
        opt_a["param_groups"] == opt_b["param_groups"]
        and opt_a["state"].keys() == opt_b["state"].keys()
    )
    for k, state in opt_a["state"].items():
        assert all(torch.equal(v, opt_b["state"][k][n]) for n, v in state.items()), k
    assert torch.equal(torch.get_rng_state(), saved["trainer"]["rng"]["torch"])
