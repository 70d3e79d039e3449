"""int8 graphs for CPU deployment, made from the fp32 export with ONNX Runtime's quantisation tools.

* encoder.int8.onnx: the convolutions (backbone, neck) statically quantised in QDQ form: uint8
  activations whose ranges are calibrated on frames the user points at (a video, an image folder or a
  glob), int8 per-channel weights; then every MatMul with a constant weight (the transformer's linear
  layers) dynamically quantised (int8 weights, activation ranges measured per call).
* decoder.int8.onnx: the MatMuls dynamically quantised; nothing to calibrate.

The deformable sampling (GridSample), the softmaxes, normalisations and the top-k stay float32.
docs/DEPLOY.md gives the accuracy against the fp32 graphs.
"""

import logging
import os
import shutil
import tempfile
from typing import Callable, Dict, Iterable, Iterator, List, Optional

import numpy as np

from ..utils.atomic import atomic_path
from .onnx import DECODER_FILE, ENCODER_FILE

__all__ = [
    "ENCODER_INT8_FILE",
    "DECODER_INT8_FILE",
    "graph_files",
    "calibration_images",
    "quantize_graphs",
    "keypoint_drift",
]

logger = logging.getLogger(__name__)

ENCODER_INT8_FILE = "encoder.int8.onnx"
DECODER_INT8_FILE = "decoder.int8.onnx"


def graph_files(precision: str) -> Dict[str, str]:
    """{"encoder": file name, "decoder": file name} of the fp32 or int8 graphs of an export folder."""
    if precision == "fp32":
        return {"encoder": ENCODER_FILE, "decoder": DECODER_FILE}
    if precision == "int8":
        return {"encoder": ENCODER_INT8_FILE, "decoder": DECODER_INT8_FILE}
    raise ValueError(f"precision must be 'fp32' or 'int8', got {precision!r}")


def calibration_images(
    path: str, prepare: Callable[[np.ndarray], "object"], max_frames: int
) -> List[np.ndarray]:
    """Up to `max_frames` frames of `path` (a video file, an image folder or a glob: the demo's frame
    sources), spread evenly over it, each through `prepare` (the test resize, BGR -> INPUT.FORMAT,
    (3, h, w)) -> encoder inputs (1, 3, h, w) float32."""
    from ..inference.frames import open_frame_source

    if max_frames < 1:
        raise ValueError(f"the calibration needs at least one frame, got max_frames={max_frames}")
    is_video = os.path.isfile(path) and not path.lower().endswith(
        (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
    )
    source = open_frame_source(video_input=path) if is_video else open_frame_source(inputs=[path])
    frames = list(source)  # calibration sets are small; the even spread needs the count
    if not frames:
        raise ValueError(f"calibration frames: {path} holds no readable frame")
    picks = np.unique(
        np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).round().astype(int)
    )
    out = []
    for i in picks:
        x = prepare(frames[i])
        x = x.numpy() if hasattr(x, "numpy") else np.asarray(x)
        out.append(x[None].astype(np.float32))
    return out


class _Frames:
    """onnxruntime.quantization.CalibrationDataReader over a list of encoder inputs."""

    def __init__(self, images: Iterable[np.ndarray]):
        self._it: Iterator[np.ndarray] = iter(list(images))

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        x = next(self._it, None)
        return None if x is None else {"image": x}

    def rewind(self):  # not needed: one calibration pass
        pass


def _copy_metadata(src: str, dst: str, extra: Dict[str, str]) -> None:
    import onnx

    meta = {p.key: p.value for p in onnx.load(src, load_external_data=False).metadata_props}
    meta.update(extra)
    graph = onnx.load(dst)
    del graph.metadata_props[:]
    for key, value in meta.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(graph, dst)


def _dynamic_matmuls(src: str, dst: str) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        src, dst, op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8, per_channel=False
    )


def quantize_graphs(
    onnx_dir: str, calibration: List[np.ndarray], source: str = ""
) -> Dict[str, str]:
    """Write onnx_dir/encoder.int8.onnx and decoder.int8.onnx from the fp32 graphs there.

    calibration: encoder inputs (1, 3, h, w) float32 (`calibration_images`); source: where they came from
    (recorded in the metadata). Each file appears only when complete. Returns {"encoder": path, "decoder": path}.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if not calibration:
        raise ValueError("int8 export: no calibration frames")
    src = {k: os.path.join(onnx_dir, f) for k, f in graph_files("fp32").items()}
    dst = {k: os.path.join(onnx_dir, f) for k, f in graph_files("int8").items()}
    for path in src.values():
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"int8 export needs the fp32 graph {path} (tools/deploy/export_model.py)"
            )
    extra = {
        "pavenet.precision": "int8",
        "pavenet.calibration_frames": str(len(calibration)),
        "pavenet.calibration_source": os.path.basename(source.rstrip("/")) if source else "",
    }
    tmp = tempfile.mkdtemp(prefix="pavenet_int8_")
    try:
        convs = os.path.join(tmp, "encoder.qdq.onnx")
        logger.info(
            "Quantising %s: convolutions (QDQ, %d calibration frames), then MatMuls (dynamic)",
            src["encoder"],
            len(calibration),
        )
        quantize_static(
            src["encoder"],
            convs,
            _Frames(calibration),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["Conv"],
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        with atomic_path(dst["encoder"]) as out:
            _dynamic_matmuls(convs, out)
            _copy_metadata(src["encoder"], out, extra)
        logger.info("Quantising %s: MatMuls (dynamic)", src["decoder"])
        with atomic_path(dst["decoder"]) as out:
            _dynamic_matmuls(src["decoder"], out)
            _copy_metadata(src["decoder"], out, {**extra, "pavenet.calibration_frames": "0"})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dst


def keypoint_drift(reference, test, images: Iterable) -> Dict[str, float]:
    """How far `test`'s poses are from `reference`'s (two backends with `encode_frame` / `decode_rows`,
    e.g. the fp32 and the int8 `OrtClipModel`) on a video: images are the prepared frames (3, h, w) in
    order; every frame is a key frame once (border windows replicate, as the predictor does).

    Each reference row (in score order) is paired with the closest unpaired test row (mean joint distance),
    so a re-ordered or re-selected but equal pose counts as no drift. Returns the drift of the paired rows'
    keypoints in pixels of the network input (key frame): "median_px", "p95_px", "max_px", and of their
    scores, "score_max_abs"; "topk_overlap": the fraction of the reference's k rows (decoder queries)
    that the test also returns."""
    from ..inference.predictor import sliding_windows

    encoded = [(reference.encode_frame(im)[0], test.encode_frame(im)) for im in images]
    if not encoded:
        raise ValueError("keypoint_drift: no frames")
    h, w = encoded[0][1][1]
    scale = np.array([w, h], dtype=np.float64)
    drifts, scores, overlap, rows = [], [], 0, 0
    for _, window in sliding_windows(encoded, reference.num_frames):
        ref = reference.decode_rows([r for r, _ in window])
        got = test.decode_rows([t[0] for _, t in window])
        overlap += len(set(ref["query_index"].tolist()) & set(got["query_index"].tolist()))
        rows += len(ref["query_index"])
        a, b = ref["keypoints"] * scale, got["keypoints"] * scale  # (k, K, 2) pixels
        dist = np.linalg.norm(a[:, None] - b[None], axis=-1)  # (k, k, K)
        free = np.ones(len(b), dtype=bool)
        for i in range(len(a)):
            j = int(np.argmin(np.where(free, dist[i].mean(-1), np.inf)))
            free[j] = False
            drifts.append(dist[i, j])
            scores.append(abs(float(got["scores"][j]) - float(ref["scores"][i])))
    px = np.concatenate(drifts)
    return {
        "frames": len(encoded),
        "rows": rows,
        "topk_overlap": overlap / max(rows, 1),
        "median_px": float(np.median(px)),
        "p95_px": float(np.percentile(px, 95)),
        "max_px": float(px.max()),
        "score_max_abs": max(scores),
    }
