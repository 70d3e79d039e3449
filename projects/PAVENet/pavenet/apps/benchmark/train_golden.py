"""The training step on a golden training case (`tools/benchmark.py --golden-train CASE_DIR`).

A golden training case (a folder with `input.npz`, `outputs.npz`, `meta.json`; its parent holds
`make_weights.py`) fixes the official model's seeded weights, one clip and its key-frame ground truth.
Timing the step on it makes our numbers comparable with the official code's on the same input. The
step runs as the golden training test runs it: the seeded official checkpoint converted as a user would
(`tools/convert_official_ckpt.py`), `model.train()` with dropout off (the case's deterministic
settings), `sum(losses).backward()`. Forward (including matching and losses) and backward are timed
apart, for every deformable-attention backend, interleaved in one process (best of N rounds: wall,
process CPU and user CPU ms). Each backend's total loss is checked against the case's official one.

`golden_train_batch` and `deterministic_training` are also what tests/test_golden_train.py feeds the
model, so the benchmark times exactly the tested computation.
"""

import contextlib
import json
import logging
import resource
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances, Keypoints

from pavenet import modeling  # noqa: F401  (registers PAVENet)
from pavenet.apps.gpu_check import convert_golden_weights
from pavenet.checkpoint import PAVENetCheckpointer
from pavenet.config import load_pavenet_config
from pavenet.modeling.msda_backend import set_msda_impl
from pavenet.utils.device import fall_back_to_cpu

from .timing import _sync, machine_info

__all__ = [
    "LOSS_RTOL",
    "golden_train_batch",
    "deterministic_training",
    "golden_train_model",
    "time_forward_backward",
    "run_golden_train_benchmark",
]

LOSS_RTOL = (
    1e-4  # the golden training test's tolerance on the total loss (float32, CUDA with TF32 off)
)


def golden_train_batch(case_dir: Path, model: torch.nn.Module) -> Dict:
    """The case's clip as the uint8 frames a user feeds (checked to normalise bit-exactly to the stored
    tensor) and its key-frame ground truth as the clip mapper's Instances: one `model([...])` input.

    input.npz: `img` (1, F, 3, H, W) normalised RGB, `gt_keypoints` (n, 3K), `gt_areas` (n,), `gt_bboxes`
    (n, 4), `gt_labels` (n,)."""
    path = Path(case_dir) / "input.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (a golden training case folder holds input.npz)")
    inp = np.load(path)
    img = torch.from_numpy(inp["img"][0])  # (F, 3, H, W)
    mean, std = model.pixel_mean.cpu(), model.pixel_std.cpu()
    frames = (img * std + mean).round().clamp(0, 255).to(torch.uint8)
    if not torch.equal((frames.float() - mean) / std, img):
        raise ValueError(
            f"{path}: `img` is not a uint8 image normalised with the model's PIXEL_MEAN / PIXEL_STD"
        )
    k = model.head.num_keypoints
    inst = Instances(tuple(img.shape[-2:]))
    inst.gt_keypoints = Keypoints(torch.from_numpy(inp["gt_keypoints"]).view(-1, k, 3))
    inst.gt_areas = torch.from_numpy(inp["gt_areas"])
    inst.gt_boxes = Boxes(torch.from_numpy(inp["gt_bboxes"]))
    inst.gt_classes = torch.from_numpy(inp["gt_labels"])
    return {"images": frames, "instances": inst}


def deterministic_training(model: torch.nn.Module) -> torch.nn.Module:
    """`model.train()` with every dropout off, nn.MultiheadAttention's own included (it is no nn.Dropout):
    the golden cases' deterministic training settings."""
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        elif isinstance(m, torch.nn.MultiheadAttention):
            m.dropout = 0.0
    return model


def golden_train_model(config_file: str, weights: Path, opts: Sequence = ()):
    """(cfg, model): `config_file` + `opts` with the converted golden `weights`, in `deterministic_training`
    mode, on MODEL.DEVICE (the CPU when that asks for CUDA that is not there)."""
    cfg = load_pavenet_config(config_file, [*opts, "MODEL.WEIGHTS", str(weights)])
    warning = fall_back_to_cpu(cfg)
    if warning:
        logging.getLogger("pavenet").warning(warning)
    model = build_model(cfg)
    PAVENetCheckpointer(model).resume_or_load(cfg.MODEL.WEIGHTS, resume=False)
    return cfg, deterministic_training(model)


def _clocks():
    return (
        time.perf_counter(),
        time.process_time(),
        resource.getrusage(resource.RUSAGE_SELF).ru_utime,
    )


def time_forward_backward(
    model: torch.nn.Module,
    batch: List[Dict],
    impls: Sequence[str],
    repeats: int,
    amp_dtype: Optional[torch.dtype] = None,
) -> Dict[str, dict]:
    """Best-of-`repeats` forward and backward ms (wall, process CPU, user CPU) of one training step per
    deformable-attention backend, rounds interleaved over the backends (no optimizer step: the weights stay
    the case's). `amp_dtype`: the forward under autocast (float16 with a GradScaler's fixed scale of 2**16 on
    CUDA, as the first AMPTrainer step does). Returns {impl: {"forward_ms", "forward_cpu_ms", ...,
    "step_ms", "step_cpu_ms", "step_user_cpu_ms", "total_loss"}}; "step" is the best round's sum."""
    device = next(model.parameters()).device
    best: Dict[str, dict] = {impl: {} for impl in impls}
    scale = 2.0**16 if amp_dtype == torch.float16 else 1.0
    for _ in range(repeats):
        for impl in impls:
            set_msda_impl(model, impl, log=False)
            model.zero_grad(set_to_none=True)
            _sync(device)
            c0 = _clocks()
            with (
                torch.autocast(device.type, dtype=amp_dtype)
                if amp_dtype
                else contextlib.nullcontext()
            ):
                losses = model(batch)
            total = sum(losses.values())
            _sync(device)
            c1 = _clocks()
            (total * scale).backward()
            _sync(device)
            c2 = _clocks()
            fwd = [(b - a) * 1e3 for a, b in zip(c0, c1)]
            bwd = [(b - a) * 1e3 for a, b in zip(c1, c2)]
            row = {}
            for part, clocks in (
                ("forward", fwd),
                ("backward", bwd),
                ("step", [f + b for f, b in zip(fwd, bwd)]),
            ):
                row.update(zip((f"{part}_ms", f"{part}_cpu_ms", f"{part}_user_cpu_ms"), clocks))
            row["total_loss"] = float(total.detach())
            b = best[impl]
            for key, val in row.items():
                b[key] = val if key == "total_loss" else min(b.get(key, float("inf")), val)
    model.zero_grad(set_to_none=True)
    return best


def run_golden_train_benchmark(
    config_file: str,
    case_dir: str,
    official_keys: str,
    *,
    repeats: int = 3,
    threads: int = 0,
    backends: str = "all",
    amp: bool = False,
    opts: Sequence = (),
) -> dict:
    """Time the training step of the golden case in `case_dir` (see the module docstring) -> the result dict:
    per backend forward / backward / step ms, the kernel-over-PyTorch ratios, each backend's total loss and
    the official one. `official_keys` is the official checkpoint's key list (`make_weights.py` input); the
    device is `opts`' MODEL.DEVICE (the config's; the CPU when CUDA is not there); `amp`: the forward under
    autocast (float16 on CUDA, bfloat16 on CPU), losses then checked for finiteness only. A float32 total loss
    off the official one by more than LOSS_RTOL relative raises ValueError."""
    from .runs import backends_to_run

    case = Path(case_dir)
    for path in (
        case / "input.npz",
        case / "outputs.npz",
        case / "meta.json",
        case.parent / "make_weights.py",
        Path(official_keys),
    ):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found (--golden-train CASE_DIR needs the case's input.npz, "
                "outputs.npz, meta.json, make_weights.py in its parent, and --official-keys)"
            )
    if threads:
        torch.set_num_threads(threads)
    # Full float32 on a GPU where AMP is off (no TF32), as the golden tolerances assume.
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    meta = json.loads((case / "meta.json").read_text())
    official = float(np.load(case / "outputs.npz")["total_loss"])
    with tempfile.TemporaryDirectory(prefix="pavenet_bench_golden_") as tmp:
        weights = convert_golden_weights(
            case.parent,
            Path(official_keys),
            Path(tmp),
            int(meta["weight_seed"]),
            config_file=config_file,
        )
        cfg, model = golden_train_model(config_file, weights, opts)
    device = cfg.MODEL.DEVICE
    impls = backends_to_run(backends)
    batch = [golden_train_batch(case, model)]
    amp_dtype = (torch.float16 if device.startswith("cuda") else torch.bfloat16) if amp else None
    time_forward_backward(
        model, batch, impls, 1, amp_dtype
    )  # warm-up (allocator, lazy init, autotune)
    per_backend = time_forward_backward(model, batch, impls, repeats, amp_dtype)
    set_msda_impl(model, cfg.MODEL.PAVENET.MSDA_IMPL, log=False)
    for impl, row in per_backend.items():
        loss = row["total_loss"]
        ok = np.isfinite(loss) if amp else abs(loss - official) <= LOSS_RTOL * abs(official)
        if not ok:
            raise ValueError(
                f"--golden-train {case.name}: backend {impl} total loss {loss} vs official {official}"
                + (" (not finite)" if amp else f" (> {LOSS_RTOL:g} relative)")
            )
    res = {
        "case": case.name,
        "config": config_file,
        "clip_shape": list(batch[0]["images"].shape),
        "num_gt": len(batch[0]["instances"]),
        "official_total_loss": official,
        "amp": bool(amp),
        "amp_dtype": str(amp_dtype).replace("torch.", "") if amp else None,
        "repeats": repeats,
        "backends": per_backend,
    }
    if "pytorch" in per_backend and "kernel" in per_backend:
        p, k = per_backend["pytorch"], per_backend["kernel"]
        res["kernel_over_pytorch"] = {
            key: k[key] / p[key] for key in k if key.endswith("_ms") and p[key] > 0
        }
    res["machine"] = machine_info(torch.device(device))
    res["torch_threads"] = torch.get_num_threads()
    return res
