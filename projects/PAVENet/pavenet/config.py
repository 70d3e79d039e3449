"""`add_pavenet_config`: PAVE-Net's config keys with their defaults (the official R50, F=3 model).

It adds keys and changes none of detectron2's: the training recipe over detectron2's defaults (the
meta-architecture, pixel normalisation, ResNet, input sizes, solver) is `configs/Base-PAVENet.yaml`,
which every shipped config inherits. Only keys of detectron2's `get_cfg()` (v0.6 and main) and the keys
added here may appear in YAML. Defaults follow the official final config (docs/REFERENCE.md §10, §17).
"""

import os
from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg

__all__ = [
    "BASE_CONFIG",
    "ConfigError",
    "add_pavenet_config",
    "frozen_config",
    "get_config_file",
    "load_pavenet_config",
]

BASE_CONFIG = "Base-PAVENet.yaml"


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the file or key."""


def get_config_file(name: str = BASE_CONFIG) -> str:
    """Path of a shipped config, `name` relative to the source tree's configs/ folder (e.g.
    "posetrack17/pavenet_r50_3f_pt17.yaml"); the package is installed from a source tree (`pip install -e .`),
    whose configs/ sits beside projects/."""
    path = Path(__file__).resolve().parents[3] / "configs" / name
    if not path.is_file():
        raise ConfigError(
            f"shipped config {name!r} not found at {path} (is pavenet installed from its source tree?)"
        )
    return str(path)


def load_pavenet_config(config_file: str = "", opts: Sequence = ()) -> CN:
    """detectron2 defaults + PAVE-Net keys + `config_file` (optional) + KEY VALUE `opts`, not frozen.

    A missing file, a YAML error, an unknown key or a value of the wrong type raises ConfigError
    naming the file (or the overrides) instead of a traceback from inside yacs.
    """
    cfg = add_pavenet_config(get_cfg())
    if config_file:
        if not os.path.isfile(config_file):
            raise ConfigError(f"config file not found: {config_file}")
        try:
            cfg.merge_from_file(config_file)
        except Exception as e:  # yacs / yaml raise KeyError, ValueError, AssertionError, YAMLError
            raise ConfigError(f"{config_file}: {type(e).__name__}: {e}") from e
    try:
        cfg.merge_from_list(list(opts))
    except Exception as e:
        raise ConfigError(f"config overrides {list(opts)}: {type(e).__name__}: {e}") from e
    return cfg


def frozen_config(
    config_file: str, opts: Sequence = (), adjust: Optional[Callable[[CN], None]] = None
) -> Tuple[CN, Optional[str]]:
    """The config a program runs with: `load_pavenet_config(config_file, opts)`, then `adjust(cfg)` (the
    program's own settings), MODEL.DEVICE "cuda" -> "cpu" on a machine without CUDA, frozen.

    Returns (cfg, the device fallback's warning or None), for the caller to log once its logger is set up.
    """
    from .utils.device import fall_back_to_cpu

    cfg = load_pavenet_config(config_file, opts)
    if adjust is not None:
        adjust(cfg)
    device_warning = fall_back_to_cpu(cfg)
    cfg.freeze()
    return cfg, device_warning


def add_pavenet_config(cfg: CN) -> CN:
    """Add the PAVE-Net keys to a detectron2 config, in place, and return it; detectron2's keys keep their
    values (build a model from `configs/Base-PAVENet.yaml` or one of its children)."""
    cfg.MODEL.PAVENET = CN()
    P = cfg.MODEL.PAVENET
    P.NUM_FRAMES = 3  # F = 2T+1 frames per clip; 1 reduces to the single-frame (PETR-like) model
    P.NUM_KEYPOINTS = 15
    P.NUM_QUERIES = 300
    P.HIDDEN_DIM = 256
    P.NHEADS = 8
    P.DIM_FEEDFORWARD = 1024
    P.DROPOUT = 0.1
    P.IN_FEATURES = ["res3", "res4", "res5"]
    P.NUM_FEATURE_LEVELS = (
        4  # the extra stride-64 level is a strided conv on the last input feature
    )
    P.ENC_LAYERS = 6
    P.ENC_N_POINTS = 4
    P.POSE_DEC_LAYERS = 3
    P.JOINT_DEC_LAYERS = 2
    P.JOINT_N_POINTS = 4
    # Swin backbone (timm) options, used when MODEL.BACKBONE.NAME == "build_pavenet_swin_backbone".
    P.SWIN = CN()
    P.SWIN.MODEL_NAME = "swin_large_patch4_window7_224"
    P.SWIN.OUT_INDICES = [1, 2, 3]
    P.SWIN.DROP_PATH_RATE = 0.3
    # Overrides of the timm model's architecture (0 / [] keep MODEL_NAME's own: Swin-L p4-w7 is embed 192,
    # depths [2, 2, 18, 2], heads [6, 12, 24, 48], window 7), e.g. a shallow Swin for tests.
    P.SWIN.EMBED_DIM = 0
    P.SWIN.DEPTHS = []
    P.SWIN.NUM_HEADS = []
    P.SWIN.WINDOW_SIZE = 0
    # Loss weights (docs/REFERENCE.md §8) and matcher costs.
    P.CLASS_WEIGHT = 0.5
    P.ENC_CLASS_WEIGHT = 0.5
    P.RLE_WEIGHT = 1.0
    P.ENC_RLE_WEIGHT = 1.0
    P.JOINT_RLE_WEIGHT = 1.0
    P.FOCAL_ALPHA = 0.25
    P.FOCAL_GAMMA = 2.0
    P.COST_CLASS = 2.0
    P.COST_KPT_L1 = 70.0
    P.COST_OKS = 7.0
    P.DEEP_SUPERVISION = True
    # "clip": each clip's losses normalised by its own counts, then averaged (the official recipe, 1 clip
    # x N gradient-accumulation steps); "batch": one normaliser for the whole batch (docs/MODEL.md).
    P.LOSS_NORMALIZATION = "clip"
    # Faithfulness switches (docs/MODEL.md lists each): the official code's behaviour is the default.
    # docs/REFERENCE.md §16 8d: padded tokens zeroed before value_proj in the multi-frame attentions
    P.VALUE_FILL_BEFORE_PROJ = True
    P.DETACH_POSE_REFERENCES = (
        False  # docs/REFERENCE.md §5.2: the official decoder does not detach between layers
    )
    # The official joint attention gives all F frames' sampling_offsets.bias one storage under F
    # Parameters ("shared_storage": last frame's value wins on load, F gradients and F updates per step);
    # "shared_parameter" = one Parameter (one summed gradient, one update); "independent" = F biases.
    P.JOINT_OFFSET_BIAS = "shared_storage"
    # docs/REFERENCE.md §16 8a: the official F=5 head starts the joint decoder's t+2 pose from next_kpt_branches;
    # "next_next" uses that frame's own branch (as the pose decoder itself does).
    P.F5_T2_REFERENCE_BRANCH = "next"
    # Deformable-attention sampling: "auto" (the compiled torch-ms-deform-attn kernel when it imports,
    # else PyTorch), "pytorch" (grid_sample reference) or "kernel" (error if the package is missing).
    P.MSDA_IMPL = "auto"
    # Training options beyond the paper for faster NMS-free convergence (docs/MODEL.md); all off in the
    # official recipe, whose numbers were obtained without them. None changes the inference forward.
    # Focal target of a matched query = OKS of its prediction with its GT (quality focal loss), not 1.
    P.OKS_QUALITY_TARGET = False
    # Hybrid matching: this many extra training-only queries (the next-ranked encoder proposals, sharing
    # the query embeddings) form a group that cannot attend to the one-to-one queries nor they to it, and
    # is matched one-to-many (each GT repeated ONE_TO_MANY_K times); 0 = off.
    P.ONE_TO_MANY_QUERIES = 0
    P.ONE_TO_MANY_K = 4
    P.ONE_TO_MANY_WEIGHT = (
        1.0  # loss weight of the one-to-many group (relative to the pose layers')
    )
    # MODEL.WEIGHTS whose tensors do not fit the model (another architecture, joint or frame count):
    # "error" names the file and the tensors; "skip" is detectron2's behaviour (load what fits, warn about
    # the rest), for fine-tuning with another head on purpose. detectron2 model-zoo .pkl backbones always skip.
    P.WEIGHTS_MISMATCH = "error"
    # Contrastive denoising (DN-DETR / DINO for poses, modeling/denoising.py): this many training-only groups
    # of noised GT key-frame poses, a positive (shift < DENOISING_NOISE x the person's extent, reconstructs
    # the person, scores 1) and a negative (shift DENOISING_NOISE..2x, scores 0) per GT person, masked off
    # from the matching queries and from each other; 0 = off.
    P.DENOISING_GROUPS = 0
    P.DENOISING_NOISE = 0.3
    P.DENOISING_WEIGHT = 1.0  # loss weight of the denoising queries (relative to the pose layers')
    # Exponential moving average of the weights (engine/ema.py): evaluated during training, saved as
    # "model_ema" in every checkpoint and loaded in place of the raw weights for inference; 0 = off.
    # The average spans ~1 / (1 - EMA_DECAY) iterations.
    P.EMA_DECAY = 0.0
    P.TEST = CN()
    P.TEST.TOPK = 20  # max_per_img: persons refined by the joint decoder and output per clip
    P.TEST.SCORE_THRESH = 0.0  # no threshold for AP; the demo raises it
    P.TEST.OKS_NMS_THRESH = 0.0  # 0 = NMS-free (paper); 0.45 reproduces the experimental head
    P.TEST.COORD_REWEIGHT = (
        True  # the official p^5/(p^5+1e-10) coordinate weighting (docs/REFERENCE.md §9)
    )

    # Clip sampling and augmentation (docs/REFERENCE.md §10, §12). Augmentations are drawn once per clip.
    cfg.INPUT.PAVENET = CN()
    I = cfg.INPUT.PAVENET
    I.CROP_PROB = 0.5  # AutoAugment: policy (b) resize->crop->resize with this probability
    I.CROP_PRE_RESIZE_SHORT = [400, 500, 600]
    I.ROTATION = 30.0  # degrees, uniform in [-ROTATION, ROTATION]; 0 disables
    I.COLOR_AUG = True  # photometric distortion, same values for every frame
    I.TEST_FRAMES = "labeled"  # "labeled" or "all": which frames of a test video get a clip
    I.PSEUDO_CLIP_MAX_ROTATION = (
        5  # COCO pseudo-clips (docs/REFERENCE.md §11): aux frames rotated by randint{0..N} deg
    )

    # The optimizer's parameter groups and type (engine/trainer.py); detectron2's SOLVER keys hold the rest.
    cfg.SOLVER.OPTIMIZER = "ADAMW"  # or "SGD"
    cfg.SOLVER.BACKBONE_MULTIPLIER = 0.1  # lr multiplier of parameters named *backbone*
    cfg.SOLVER.SAMPLING_OFFSET_MULTIPLIER = (
        0.1  # lr multiplier of the deformable attentions' sampling offsets
    )
    # With SOLVER.AMP.ENABLED: "auto" = float16 + GradScaler on CUDA, bfloat16 on the CPU (engine/amp.py).
    cfg.SOLVER.AMP.DTYPE = "auto"

    cfg.TEST.POSETRACK = CN()
    # Assign track ids in evaluation (the demo's tracker) and report poseval's MOTA next to AP; needs
    # VIDEO_MODE "stream" (the tracker follows consecutive windows).
    cfg.TEST.POSETRACK.EVAL_TRACKING = False
    # "stream": one video per batch, each frame encoded once (cached), the same decoding as the demo;
    # "clips": every test frame's clip through the model's forward on its own (F encodes per frame).
    # Both give the same predictions (docs/EVALUATION.md).
    cfg.TEST.POSETRACK.VIDEO_MODE = "stream"
    # Joints scored below this are written as absent (0, 0, 0) in the evaluated files: MOTA counts every
    # present joint as a hypothesis whatever its score, AP wants them all (0 = keep every joint).
    cfg.TEST.POSETRACK.JOINT_SCORE_THRESH = 0.0
    # The tracker's settings (the demo's defaults): minimum mean OKS on the frames two windows share,
    # and windows a track survives unmatched.
    cfg.TEST.POSETRACK.TRACK_MATCH_THRESH = 0.3
    cfg.TEST.POSETRACK.TRACK_PATIENCE = 2
    return cfg
