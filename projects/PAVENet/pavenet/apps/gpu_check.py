"""The GPU check of the deformable-attention kernel (tools/gpu_check.py, scripts/gpu_check.sh).

With the golden case's seeded official weights, converted as a user would, the model runs the golden
input once per deformable-attention backend ("pytorch", "kernel") on one device; the two runs are compared
with each other and with the official outputs, within the CPU golden test's tolerances (encoder memory
2e-4, keypoints 1e-2 px). The golden folder holds `make_weights.py` and `r50_f3_seed2026/{input,outputs}.npz`
(the files tests/test_golden.py reads); the official R50 F=3 key list names the tensors.
"""

import importlib.util
import json
import tempfile
from pathlib import Path
from typing import Dict

import numpy as np
import torch
from detectron2.modeling import build_model

from .. import modeling  # noqa: F401  (registers PAVENet)
from ..checkpoint import PAVENetCheckpointer
from ..config import get_config_file, load_pavenet_config
from ..conversion.naming import detect_num_frames
from ..utils.device import cuda_unavailable
from .convert_official import main as convert_main

__all__ = [
    "GOLDEN_CASE",
    "GpuCheckError",
    "load_make_weights",
    "convert_golden_weights",
    "run_golden_case",
    "compare_runs",
    "check_kernel",
]

GOLDEN_CASE = "r50_f3_seed2026"
MEMORY_ATOL, KEYPOINT_ATOL_PX = 2e-4, 1e-2  # tests/test_golden.py's tolerances


class GpuCheckError(RuntimeError):
    """The check cannot run: no CUDA for a CUDA device, or the golden weights do not convert."""


def load_make_weights(golden_dir: Path):
    """The golden folder's `make_weights.py` as a module (`make_state_dict`, `read_keys`)."""
    spec = importlib.util.spec_from_file_location(
        "pavenet_golden_make_weights", Path(golden_dir) / "make_weights.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def convert_golden_weights(
    golden_dir: Path, keys_file: Path, tmp: Path, seed: int = 2026, config_file: str = ""
) -> Path:
    """Seeded official checkpoint -> tools/convert_official_ckpt.py's conversion (for `config_file`'s model
    when given) -> `tmp`/ours.pth."""
    mw = load_make_weights(golden_dir)
    official = mw.make_state_dict(mw.read_keys(str(keys_file)), seed)
    torch.save({"state_dict": official}, tmp / "official.pth")
    target = []
    if config_file:
        target = [
            "--config-file",
            str(config_file),
            "--num-frames",
            str(detect_num_frames(official)),
        ]
    if (
        convert_main(["--src", str(tmp / "official.pth"), "--dst", str(tmp / "ours.pth"), *target])
        != 0
    ):
        raise GpuCheckError("conversion of the golden weights failed (see the log above)")
    return tmp / "ours.pth"


def run_golden_case(
    weights: Path, golden_dir: Path, impl: str, device: str
) -> Dict[str, torch.Tensor]:
    """One run of the golden input with MSDA_IMPL `impl` -> float64 CPU tensors: `memory` (encoder output),
    `prenms` (k, K, 3) and `det` (n, K, 3) keypoints."""
    cfg = load_pavenet_config(get_config_file())
    cfg.MODEL.DEVICE = device
    cfg.MODEL.PAVENET.MSDA_IMPL = impl
    cfg.MODEL.PAVENET.TEST.OKS_NMS_THRESH = 0.45  # the golden producer is the experimental head
    model = build_model(cfg).eval()
    PAVENetCheckpointer(model).resume_or_load(str(weights), resume=False)
    inp = np.load(Path(golden_dir) / GOLDEN_CASE / "input.npz")
    meta = json.loads(str(inp["img_metas_json"]))
    img = torch.from_numpy(inp["img"])[0].to(device)  # (F, 3, H, W), already normalised
    h, w = meta["img_shape"][:2]
    with torch.no_grad():
        feats = model.encode_frames(img, (h, w))
        inst, inter = model.decode_clip(
            feats, (h, w), tuple(meta["ori_shape"][:2]), return_intermediates=True
        )
    return {
        "memory": feats.memory.cpu().double(),
        "prenms": inter["prenms_keypoints"].cpu().double(),
        "det": inst.pred_keypoints.cpu().double(),
    }


def _maxdiff(a: torch.Tensor, b) -> float:
    b = torch.as_tensor(np.asarray(b), dtype=torch.float64)
    return float((a - b).abs().max()) if a.shape == b.shape else float("inf")


def compare_runs(runs: Dict[str, Dict[str, torch.Tensor]], gold) -> dict:
    """Max differences of each backend's run from the golden outputs (`memory`, `det_kpts`) and of the
    kernel from PyTorch; `ok` when all are within the CPU golden test's tolerances (a shape mismatch is inf)."""
    res = {}
    for impl, r in runs.items():
        res[impl] = {
            "memory_vs_golden": _maxdiff(r["memory"], gold["memory"]),
            "det_xy_vs_golden_px": _maxdiff(r["det"][..., :2], gold["det_kpts"][..., :2]),
            "det_score_vs_golden": _maxdiff(r["det"][..., 2], gold["det_kpts"][..., 2]),
        }
    k, t = runs["kernel"], runs["pytorch"]
    res["kernel_vs_pytorch"] = {
        "memory": _maxdiff(k["memory"], t["memory"]),
        "prenms_xy_px": _maxdiff(k["prenms"][..., :2], t["prenms"][..., :2]),
        "det_xy_px": _maxdiff(k["det"][..., :2], t["det"][..., :2]),
    }
    res["ok"] = (
        all(
            res[i]["memory_vs_golden"] <= MEMORY_ATOL
            and res[i]["det_xy_vs_golden_px"] <= KEYPOINT_ATOL_PX
            for i in runs
        )
        and res["kernel_vs_pytorch"]["det_xy_px"] <= KEYPOINT_ATOL_PX
    )
    return res


def check_kernel(golden_dir: Path, keys_file: Path, device: str = "cuda") -> dict:
    """Both backends on `device` vs each other and the golden outputs -> the JSON-ready result (`ok`, the
    device, torch's version, whether the kernel was built with CUDA, the differences of `compare_runs`).

    A missing golden output or key list is a FileNotFoundError naming it; a CUDA device on a machine
    without CUDA is a `GpuCheckError`."""
    golden_dir, keys_file = Path(golden_dir), Path(keys_file)
    for path in (golden_dir / GOLDEN_CASE / "outputs.npz", keys_file):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found")
    if cuda_unavailable(device):
        raise GpuCheckError(f"--device {device} but torch.cuda.is_available() is False")
    from torch_ms_deform_attn import _C

    # Full float32 on the GPU (no TF32 convolutions / matmuls), so the golden tolerances apply as on the CPU.
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    gold = np.load(golden_dir / GOLDEN_CASE / "outputs.npz")
    with tempfile.TemporaryDirectory() as tmp:
        weights = convert_golden_weights(golden_dir, keys_file, Path(tmp))
        runs = {
            impl: run_golden_case(weights, golden_dir, impl, device)
            for impl in ("pytorch", "kernel")
        }
    res = {
        "device": torch.cuda.get_device_name(0) if device.startswith("cuda") else device,
        "torch": torch.__version__,
        "kernel_built_with_cuda": bool(_C.with_cuda),
    }
    res.update(compare_runs(runs, gold))
    return res
