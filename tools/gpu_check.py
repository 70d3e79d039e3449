#!/usr/bin/env python
"""GPU check of the deformable-attention kernel: on one CUDA device, with the golden case's seeded official
weights, run the model once per backend (pytorch, kernel) and compare the two with each other and with the
official outputs; write the differences as JSON. `scripts/gpu_check.sh` runs this, then the benchmark.

  python tools/gpu_check.py --golden-dir GOLDEN --official-keys KEYS.txt --json out/gpu_check.json

GOLDEN holds `make_weights.py` and `r50_f3_seed2026/{input,outputs}.npz` (the files tests/test_golden.py
reads; see its PAVENET_GOLDEN_DIR / PAVENET_SHARED_DIR); KEYS.txt the official R50 F=3 state-dict keys.
"""
import argparse
import importlib.util
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model

import pavenet.modeling  # noqa: F401  (registers PAVENet)
from pavenet.checkpoint import PAVENetCheckpointer
from pavenet.config import add_pavenet_config
from pavenet.conversion.cli import main as convert_main
from pavenet.evaluation.writer import atomic_write_json

CASE = "r50_f3_seed2026"


def converted_weights(golden_dir: Path, keys_file: Path, tmp: Path) -> Path:
    spec = importlib.util.spec_from_file_location("pavenet_golden_make_weights", golden_dir / "make_weights.py")
    mw = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mw)
    torch.save({"state_dict": mw.make_state_dict(mw.read_keys(str(keys_file)), 2026)}, tmp / "official.pth")
    if convert_main(["--src", str(tmp / "official.pth"), "--dst", str(tmp / "ours.pth")]) != 0:
        raise RuntimeError("conversion of the golden weights failed")
    return tmp / "ours.pth"


def run_case(weights: Path, golden_dir: Path, impl: str, device: str) -> dict:
    cfg = add_pavenet_config(get_cfg())
    cfg.MODEL.DEVICE = device
    cfg.MODEL.PAVENET.MSDA_IMPL = impl
    cfg.MODEL.PAVENET.TEST.OKS_NMS_THRESH = 0.45  # the golden producer is the experimental head
    model = build_model(cfg).eval()
    PAVENetCheckpointer(model).resume_or_load(str(weights), resume=False)
    inp = np.load(golden_dir / CASE / "input.npz")
    meta = json.loads(str(inp["img_metas_json"]))
    img = torch.from_numpy(inp["img"])[0].to(device)  # (F, 3, H, W), already normalised
    h, w = meta["img_shape"][:2]
    with torch.no_grad():
        feats = model.encode_frames(img, (h, w))
        inst, inter = model.decode_clip(feats, (h, w), tuple(meta["ori_shape"][:2]), return_intermediates=True)
    return {"memory": feats.memory.cpu().double(), "prenms": inter["prenms_keypoints"].cpu().double(),
            "det": inst.pred_keypoints.cpu().double()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--golden-dir", required=True, type=Path)
    p.add_argument("--official-keys", required=True, type=Path)
    p.add_argument("--device", default="cuda")
    p.add_argument("--json", required=True)
    args = p.parse_args(argv)
    for path in (args.golden_dir / CASE / "outputs.npz", args.official_keys):
        if not path.is_file():
            print(f"error: {path} not found", file=sys.stderr)
            return 2
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda but torch.cuda.is_available() is False", file=sys.stderr)
        return 2
    from torch_ms_deform_attn import _C

    # Full float32 on the GPU (no TF32 convolutions / matmuls), so the golden tolerances apply as on the CPU.
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False

    gold = np.load(args.golden_dir / CASE / "outputs.npz")
    with tempfile.TemporaryDirectory() as tmp:
        weights = converted_weights(args.golden_dir, args.official_keys, Path(tmp))
        runs = {impl: run_case(weights, args.golden_dir, impl, args.device) for impl in ("pytorch", "kernel")}

    def maxdiff(a, b):
        b = torch.as_tensor(np.asarray(b), dtype=torch.float64)
        return float((a - b).abs().max()) if a.shape == b.shape else float("inf")

    res = {"device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else args.device,
           "torch": torch.__version__, "kernel_built_with_cuda": bool(_C.with_cuda)}
    for impl, r in runs.items():
        res[impl] = {"memory_vs_golden": maxdiff(r["memory"], gold["memory"]),
                     "det_xy_vs_golden_px": maxdiff(r["det"][..., :2], gold["det_kpts"][..., :2]),
                     "det_score_vs_golden": maxdiff(r["det"][..., 2], gold["det_kpts"][..., 2])}
    k, t = runs["kernel"], runs["pytorch"]
    res["kernel_vs_pytorch"] = {"memory": maxdiff(k["memory"], t["memory"]),
                                "prenms_xy_px": maxdiff(k["prenms"][..., :2], t["prenms"][..., :2]),
                                "det_xy_px": maxdiff(k["det"][..., :2], t["det"][..., :2])}
    # The CPU golden test's tolerances (tests/test_golden.py): memory 2e-4, keypoints 1e-2 px.
    res["ok"] = all(res[i]["memory_vs_golden"] <= 2e-4 and res[i]["det_xy_vs_golden_px"] <= 1e-2
                    for i in runs) and res["kernel_vs_pytorch"]["det_xy_px"] <= 1e-2
    atomic_write_json(args.json, res, indent=2)
    print(json.dumps(res, indent=2))
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
