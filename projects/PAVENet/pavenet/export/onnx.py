"""Export the streaming split of PAVE-Net to two ONNX graphs (docs/DEPLOY.md).

* ``encoder.onnx``: ONE frame -> its `EncodedFrames` fields (backbone, neck, spatial encoder, and the
  decoders' value maps: computed once per frame, not once per window that holds the frame).
    image (1, 3, H, W) float32 pixel values 0..255 in INPUT.FORMAT, resized, un-normalised, un-padded
    -> memory (1, S, C), padding_mask (1, S) bool, spatial_shapes (L, 2) int64, level_start_index (L,)
       int64, valid_ratios (1, L, 2), values (1, Ld, S, Hd, D): every decoder layer's value maps (Ld =
       pose + joint decoder layers, Hd heads of D channels). H, W and S = sum_l h_l * w_l are dynamic.
* ``decoder.onnx``: the F encoded frames of one clip (frames t-T..t+T) -> the key frame's top-k persons
    memory (F, S, C), padding_mask (F, S), spatial_shapes (L, 2), valid_ratios (F, L, 2), values (F, Ld, S, Hd, D)
    -> keypoints (k, K, 2), scores (k,) descending, sigmas (k, K, 2), frame_keypoints (k, F, K, 2),
       query_index (k,) int64 (which decoder query each row is); keypoints normalised to the un-padded
       input (x / w, y / h); k = min(TEST.TOPK, NUM_QUERIES).
    F, K and k are fixed by the config; S is dynamic.

The query selection's and the scores' top-k run inside the decoder graph (ONNX TopK with a constant
k); the post-processing on those k rows (pixels, p-weighting, optional OKS-NMS, score threshold) stays
in Python, shared with the PyTorch path (`postprocess_detections`). The deformable attention exports
through its PyTorch arithmetic (`grid_sample` -> GridSample, opset >= 16) in the formulation `sampling`
names (`SAMPLINGS`, modeling/msda_export.py); standard ONNX operators only, no custom ops.
"""

import contextlib
import json
import logging
import os
import warnings
from typing import Dict, Sequence, Tuple

import torch
from torch import nn

from ..modeling.head import EncodedFrames
from ..modeling.ms_deform_attn import MSDeformAttn
from ..modeling.msda_backend import set_msda_impl
from ..modeling.msda_export import EXPORT_SAMPLERS
from ..utils.atomic import atomic_path
from .graph_check import recorded_config, weights_record

__all__ = [
    "ENCODER_FILE",
    "DECODER_FILE",
    "ENCODER_INPUTS",
    "ENCODER_OUTPUTS",
    "DECODER_INPUTS",
    "DECODER_OUTPUTS",
    "OPSET",
    "SAMPLINGS",
    "EncoderGraph",
    "DecoderGraph",
    "export_onnx",
    "graph_metadata",
    "default_export_size",
]

logger = logging.getLogger(__name__)

ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"
ENCODER_INPUTS = ("image",)
# Names of `EncodedFrames` fields: the ONNX Runtime backend passes them on to the decoder by name.
ENCODER_OUTPUTS = (
    "memory",
    "padding_mask",
    "spatial_shapes",
    "level_start_index",
    "valid_ratios",
    "values",
)
DECODER_INPUTS = ("memory", "padding_mask", "spatial_shapes", "valid_ratios", "values")
DECODER_OUTPUTS = ("keypoints", "scores", "sigmas", "frame_keypoints", "query_index")
# GridSample needs opset 16; 17 adds LayerNormalization (one node instead of a decomposition); DeformConv 19.
OPSET = 17
# How the deformable sampling is written into the graphs (modeling/msda_export.py), all standard ONNX:
# "deformconv" (default): the spatial encoder's attention as DeformConv (opset 19), the decoders' as
#     "levels"; for runtimes with DeformConv-19 (ONNX Runtime >= 1.16 on CPU);
# "levels": GridSample per level, each level's samples weighted and summed as they come (opset 17);
# "stacked": the PyTorch core as it is, all levels' samples stacked, then weighted and summed (opset 17).
SAMPLINGS = ("deformconv", "levels", "stacked")
_SAMPLING_OPSET = {"deformconv": 19}


class EncoderGraph(nn.Module):
    """What encoder.onnx computes: `model.preprocess_frames` + `model.encode_frames` on one frame."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x, _ = self.model.preprocess_frames(image)  # (1, 3, H, W) -> normalised
        enc = self.model.encode_frames(x)
        fields = dict(
            vars(enc), values=torch.stack(enc.values, 1)
        )  # Ld maps (1, S, Hd, D) -> (1, Ld, S, Hd, D)
        return tuple(fields[name] for name in ENCODER_OUTPUTS)


class DecoderGraph(nn.Module):
    """What decoder.onnx computes: `model.decode_rows` on the F encoded frames of one clip."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(
        self, memory, padding_mask, spatial_shapes, valid_ratios, values
    ) -> Tuple[torch.Tensor, ...]:
        # Built field by field, so fields added to EncodedFrames later keep their defaults here.
        sizes = spatial_shapes.prod(1)
        level_start = torch.cat(
            (sizes.new_zeros(1), sizes.cumsum(0)[:-1])
        )  # read only by the kernel backend
        feats = EncodedFrames(
            memory=memory,
            padding_mask=padding_mask,
            spatial_shapes=spatial_shapes,
            level_start_index=level_start,
            valid_ratios=valid_ratios,
            values=list(values.unbind(1)),
        )  # (F, Ld, S, Hd, D) -> Ld maps (F, S, Hd, D)
        rows = self.model.decode_rows(feats)  # B = 1 clip
        return tuple(rows[name][0] for name in DECODER_OUTPUTS)


def graph_metadata(cfg, sampling: str = SAMPLINGS[0]) -> Dict[str, str]:
    """Key facts of the config, stored in both graphs (ONNX metadata_props) and checked on load
    (`graph_check.check_graph_record`)."""
    P = cfg.MODEL.PAVENET
    weights = weights_record(cfg.MODEL.WEIGHTS)
    return {
        "pavenet.num_frames": str(int(P.NUM_FRAMES)),
        "pavenet.num_keypoints": str(int(P.NUM_KEYPOINTS)),
        "pavenet.topk": str(min(int(P.TEST.TOPK), int(P.NUM_QUERIES))),
        "pavenet.hidden_dim": str(int(P.HIDDEN_DIM)),
        "pavenet.num_levels": str(int(P.NUM_FEATURE_LEVELS)),
        "pavenet.input_format": str(cfg.INPUT.FORMAT),
        "pavenet.weights": weights["name"],
        "pavenet.weights_sha256": weights["sha256"],
        "pavenet.config": json.dumps(recorded_config(cfg), sort_keys=True),
        "pavenet.sampling": sampling,
        "pavenet.precision": "fp32",
    }


@contextlib.contextmanager
def _export_mode(model: nn.Module, sampling: str = SAMPLINGS[0]):
    """Eval mode, the PyTorch deformable-attention arithmetic in the formulation `sampling` (grid_sample
    exports to GridSample; the compiled kernel has no ONNX form); both restored afterwards."""
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    own_impl = getattr(model, "msda_impl", "pytorch")
    was_training = model.training
    set_msda_impl(model, "pytorch", log=False)
    if sampling in EXPORT_SAMPLERS:
        for m in model.modules():
            if hasattr(m, "msda_impl"):
                # DeformConv only where the queries are the map's tokens (the spatial encoder).
                m.msda_impl = (
                    sampling
                    if sampling != "deformconv" or isinstance(m, MSDeformAttn)
                    else "levels"
                )
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # TracerWarnings about Python values are expected (F, L, K, k are constants of the graph);
            # the deprecation notice of the TorchScript exporter is addressed in `_export_one`.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            # Advanced indexing exports as Gather etc.; our indices (queries, clips) are never negative.
            warnings.filterwarnings(
                "ignore", message="Exporting aten::index operator", category=UserWarning
            )
            yield
    finally:
        set_msda_impl(model, own_impl, log=False)
        model.train(was_training)


def _export_one(
    module: nn.Module,
    args: tuple,
    path: str,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: Dict[str, Dict[int, str]],
    metadata: Dict[str, str],
):
    opset = _SAMPLING_OPSET.get(metadata.get("pavenet.sampling"), OPSET)
    import onnx

    with atomic_path(path) as tmp:
        # The TorchScript-based exporter (dynamo=False), on purpose: tracing records tensor sizes, and the
        # per-level sizes read from `spatial_shapes` (`level_shapes`), as graph values, so one graph serves
        # every image size. torch.export (dynamo=True, the default since torch 2.9) turns sizes read from
        # the spatial_shapes tensor into unbacked symbols that the per-level reshapes of the grid_sample
        # path cannot be guarded on, and fails on the data-dependent joint-decoder batching.
        torch.onnx.export(
            module,
            args,
            tmp,
            dynamo=False,
            opset_version=opset,
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
        )
        graph = onnx.load(tmp)
        onnx.checker.check_model(graph)
        for key, value in metadata.items():
            entry = graph.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(graph, tmp)


def export_onnx(
    model: nn.Module, cfg, output_dir: str, height: int, width: int, sampling: str = SAMPLINGS[0]
) -> Dict[str, str]:
    """Export `model` (a built PAVENet, weights loaded) to output_dir/encoder.onnx and decoder.onnx.

    height, width: the example frame size used for tracing (any size works at run time; it must give
    every level at least one token and the key frame at least NUM_QUERIES tokens). sampling: the
    formulation of the deformable sampling (`SAMPLINGS`). Each file appears only when complete.
    Returns {"encoder": path, "decoder": path}.
    """
    F = int(cfg.MODEL.PAVENET.NUM_FRAMES)
    device = next(model.parameters()).device
    metadata = graph_metadata(cfg, sampling)
    paths = {
        "encoder": os.path.join(output_dir, ENCODER_FILE),
        "decoder": os.path.join(output_dir, DECODER_FILE),
    }
    gen = torch.Generator().manual_seed(0)
    image = (torch.rand(1, 3, int(height), int(width), generator=gen) * 255).to(device)
    with _export_mode(model, sampling):
        # Wrappers in eval mode too: the exporter restores the wrapper's own mode afterwards, and a
        # wrapper left in training mode would switch the model to training (batch-norm statistics!).
        enc = EncoderGraph(model).eval()
        outs = enc(image)
        s = int(outs[0].shape[1])
        if s < int(cfg.MODEL.PAVENET.NUM_QUERIES):
            raise ValueError(
                f"export size {height}x{width} gives {s} encoder tokens < MODEL.PAVENET.NUM_QUERIES="
                f"{cfg.MODEL.PAVENET.NUM_QUERIES}: export at a larger --height/--width"
            )
        logger.info("Exporting %s (example frame %dx%d)", paths["encoder"], height, width)
        _export_one(
            enc,
            (image,),
            paths["encoder"],
            ENCODER_INPUTS,
            ENCODER_OUTPUTS,
            {
                "image": {2: "height", 3: "width"},
                "memory": {1: "tokens"},
                "padding_mask": {1: "tokens"},
                "values": {2: "tokens"},
            },
            metadata,
        )
        fields = dict(zip(ENCODER_OUTPUTS, outs))
        # The example window: F different frames (a window of copies would hide frame mix-ups).
        frames = [
            enc((torch.rand(image.shape, generator=gen) * 255).to(device)) for _ in range(F - 1)
        ]
        frames.insert(F // 2, outs)
        window = {
            n: torch.cat([dict(zip(ENCODER_OUTPUTS, f))[n] for f in frames])
            for n in DECODER_INPUTS
            if n != "spatial_shapes"
        }
        window["spatial_shapes"] = fields["spatial_shapes"]
        logger.info("Exporting %s (F=%d)", paths["decoder"], F)
        _export_one(
            DecoderGraph(model).eval(),
            tuple(window[n] for n in DECODER_INPUTS),
            paths["decoder"],
            DECODER_INPUTS,
            DECODER_OUTPUTS,
            {"memory": {1: "tokens"}, "padding_mask": {1: "tokens"}, "values": {2: "tokens"}},
            metadata,
        )
    return paths


def default_export_size(cfg) -> Tuple[int, int]:
    """A small example size for tracing: the test resize of a 3:4 frame, capped at 256 x 320."""
    short = min(int(cfg.INPUT.MIN_SIZE_TEST), 256)
    return short, int(round(short * 4 / 3 / 32)) * 32 or 32
