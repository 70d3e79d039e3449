"""Command line of tools/convert_official_ckpt.py (kept in the package so it is importable and tested).

    python tools/convert_official_ckpt.py --src OFFICIAL.pth --dst OURS.pth \
        [--arch pavenet|petr] [--num-frames 3|5] [--coco-to-posetrack] [--allow-pickle] \
        [--config-file CFG.yaml] [--no-verify] [KEY VALUE ...]

The target model (built on CPU from ``--config-file``, default configs/Base-PAVENet.yaml, and the trailing
overrides, with NUM_FRAMES / NUM_KEYPOINTS / backbone set from the checkpoint) gives the strict
two-way key and shape check, and for ``--arch petr`` the constructor init of the parameters PETR lacks.
"""

import argparse
import collections
import logging
import sys
from typing import List, Optional

import torch

from ..checkpoint_io import CheckpointReadError, load_official_checkpoint, save_converted_checkpoint
from ..conversion.naming import detect_backbone_type, detect_num_keypoints
from ..conversion.official import convert_official_state_dict_with_report, strip_wrappers
from ..conversion.report import ConversionError

logger = logging.getLogger("pavenet.convert")

SWIN_BACKBONE_NAME = "build_pavenet_swin_backbone"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Convert an official PAVE-Net or PETR (mmdetection/mmcv) checkpoint into a tensors-only "
        "checkpoint that MODEL.WEIGHTS loads with no missing or unexpected keys."
    )
    p.add_argument(
        "--src", required=True, help="official checkpoint (.pth, mmcv {'state_dict', 'meta', ...})"
    )
    p.add_argument("--dst", required=True, help="output path, written as {'model': state_dict}")
    p.add_argument(
        "--arch",
        choices=("pavenet", "petr"),
        default="pavenet",
        help="pavenet: an official PAVE-Net checkpoint (renaming only); petr: a single-frame PETR "
        "checkpoint used to initialise a PAVE-Net (docs/REFERENCE.md §14)",
    )
    p.add_argument(
        "--num-frames",
        type=int,
        choices=(1, 3, 5),
        default=3,
        help="frames per clip of the model (F)",
    )
    p.add_argument(
        "--coco-to-posetrack",
        action="store_true",
        help="slice every keypoint-indexed tensor from the 17 COCO joints to the 15 PoseTrack joints",
    )
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        help="allow a full (code-executing) unpickle of --src when weights_only loading fails; "
        "only for a file you trust",
    )
    p.add_argument(
        "--config-file",
        default="",
        help="config of the target model (default: configs/Base-PAVENet.yaml, the official R50 F=3)",
    )
    p.add_argument(
        "--no-verify",
        action="store_true",
        help="do not build the target model (no strict key/shape check; not allowed with --arch petr)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed for the fresh model's init (--arch petr)"
    )
    p.add_argument(
        "opts", nargs=argparse.REMAINDER, default=[], help="config overrides, KEY VALUE pairs"
    )
    return p


def build_target_cfg(
    config_file: str, opts: List[str], num_frames: int, num_keypoints: int, backbone: str
):
    """Config of the target PAVENet (CPU) for the given checkpoint properties."""
    from ..config import ConfigError, get_config_file, load_pavenet_config

    try:
        cfg = load_pavenet_config(config_file or get_config_file(), opts)
    except ConfigError as e:
        raise ConversionError(f"target config: {e}") from e
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.PAVENET.NUM_FRAMES = num_frames
    cfg.MODEL.PAVENET.NUM_KEYPOINTS = num_keypoints
    if backbone == "swin" and cfg.MODEL.BACKBONE.NAME != SWIN_BACKBONE_NAME:
        logger.info(
            "The checkpoint has a Swin backbone: building the target with %s", SWIN_BACKBONE_NAME
        )
        cfg.MODEL.BACKBONE.NAME = SWIN_BACKBONE_NAME
    elif backbone == "resnet" and cfg.MODEL.BACKBONE.NAME == SWIN_BACKBONE_NAME:
        raise ConversionError("the checkpoint has a ResNet backbone but the config asks for Swin")
    return cfg


def build_target_state_dict(cfg, seed: int):
    """State dict of a freshly built PAVENet (CPU) from `build_target_cfg`'s config."""
    from detectron2.modeling import build_model

    from .. import modeling  # noqa: F401  (registers PAVENet and the backbones)

    torch.manual_seed(seed)
    model = build_model(cfg)
    return {k: v.detach() for k, v in model.state_dict().items()}


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        ckpt = load_official_checkpoint(args.src, allow_pickle=args.allow_pickle)
        src = strip_wrappers(ckpt)
        if not any(k.startswith("bbox_head.") for k in src):
            raise ConversionError(
                f"{args.src}: no 'bbox_head.*' tensors, not an mmdet PAVE-Net / PETR checkpoint"
            )
        backbone = detect_backbone_type(src)
        k_src = detect_num_keypoints(src)
        k_dst = 15 if args.coco_to_posetrack else k_src
        target = None
        cfg = build_target_cfg(args.config_file, args.opts, args.num_frames, k_dst, backbone)
        if (
            args.arch == "pavenet"
        ):  # architecture / frame-count errors before the (slow) model build
            convert_official_state_dict_with_report(
                src,
                arch="pavenet",
                num_frames=args.num_frames,
                coco_to_posetrack=args.coco_to_posetrack,
            )
        if args.arch == "petr" or not args.no_verify:
            if args.no_verify:
                raise ConversionError(
                    "--arch petr needs the target model (its new parameters' init); drop --no-verify"
                )
            target = build_target_state_dict(cfg, args.seed)
        out, report = convert_official_state_dict_with_report(
            src,
            arch=args.arch,
            num_frames=args.num_frames,
            coco_to_posetrack=args.coco_to_posetrack,
            target_state_dict=target,
            init_state_dict=target if args.arch == "petr" else None,
            tie_joint_offset_bias=cfg.MODEL.PAVENET.JOINT_OFFSET_BIAS
            != "independent",  # follow the target model
        )
        save_converted_checkpoint(out, args.dst)
    except (CheckpointReadError, ConversionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ImportError as e:  # e.g. timm for a Swin target
        print(
            f"error: cannot build the target model ({e}); install it, or use --no-verify (pavenet only)",
            file=sys.stderr,
        )
        return 2
    logger.info("%s", report.summary())
    for src_name, names, differed in report.tied:
        if differed:
            logger.warning(
                "  the per-frame joint offset biases of %s differ in the checkpoint; the official model "
                "shares one storage for them and ends with %s's value, so all of them get it",
                names[0].rsplit(".", 2)[0],
                src_name,
            )
    for why, n in sorted(collections.Counter(report.ignored.values()).items()):
        logger.info("  ignored %d tensors: %s", n, why)
    logger.info(
        "wrote %s (%d tensors)%s",
        args.dst,
        len(out),
        "" if target is not None else "; not checked against a model (--no-verify)",
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
