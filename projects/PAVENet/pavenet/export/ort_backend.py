"""`OrtClipModel`: the exported encoder.onnx / decoder.onnx run by ONNX Runtime, as a `ClipPredictor` backend.

The predictor keeps the windowing, the per-frame cache, the score filter and (in the demo) the tracker;
the backend does the two heavy operations, like the PyTorch backend (`TorchClipModel`):

* `encode_frame(image)`: uint8 (3, h, w) in INPUT.FORMAT -> (encoded frame: {EncodedFrames field name:
  ndarray}, (h, w)), one encoder.onnx run;
* `decode_clip(frames, image_size, output_size)`: the F encoded frames -> key-frame `Instances`: one
  decoder.onnx run, then the shared Python post-processing (`postprocess_detections`) on its k rows.
"""

import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from detectron2.structures import Instances

from ..data.keypoint_meta import oks_sigmas_for
from ..modeling.meta_arch import postprocess_detections
from .graph_check import check_graph_record
from .onnx import DECODER_INPUTS, DECODER_OUTPUTS, ENCODER_INPUTS, ENCODER_OUTPUTS
from .quantize import graph_files

__all__ = ["OrtClipModel"]

EncodedFrame = Dict[str, np.ndarray]


def _import_ort():
    try:
        import onnxruntime
    except ImportError as e:
        raise ImportError(
            "the onnxruntime backend needs the package `onnxruntime` "
            "(python -m pip install -r requirements.txt)"
        ) from e
    return onnxruntime


class OrtClipModel:
    """Streaming PAVE-Net from `onnx_dir`/encoder.onnx and decoder.onnx (tools/deploy/export_model.py).

    Args:
        onnx_dir: the export folder.
        cfg: the config the graphs were exported from (NUM_FRAMES, NUM_KEYPOINTS, HIDDEN_DIM are checked
            against the graphs; TEST.* drive the post-processing).
        threads: ONNX Runtime intra-op threads (0: its default).
        providers: ONNX Runtime execution providers (default: CPU).
        on_mismatch: graphs whose recorded weights or config keys differ from `cfg`'s: "error" (raise
            `GraphMismatchError` naming both) or "warn" (log and run them).
        precision: "fp32" (encoder.onnx, decoder.onnx) or "int8" (encoder.int8.onnx, decoder.int8.onnx).
    """

    def __init__(
        self,
        onnx_dir: str,
        cfg,
        threads: int = 0,
        providers: Optional[Sequence[str]] = None,
        on_mismatch: str = "error",
        precision: str = "fp32",
    ):
        ort = _import_ort()
        if not onnx_dir or not os.path.isdir(onnx_dir):
            raise FileNotFoundError(
                f"ONNX directory not found: {onnx_dir!r} "
                "(write it with tools/deploy/export_model.py --output DIR)"
            )
        P = cfg.MODEL.PAVENET
        self.num_frames = int(P.NUM_FRAMES)
        self.num_keypoints = int(P.NUM_KEYPOINTS)
        self.device = torch.device("cpu")  # outputs are returned as CPU tensors
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = list(providers or ["CPUExecutionProvider"])
        files = graph_files(precision)
        self.precision = precision
        self.encoder_path = os.path.join(onnx_dir, files["encoder"])
        self.decoder_path = os.path.join(onnx_dir, files["decoder"])
        self.encoder = self._session(
            ort, self.encoder_path, opts, providers, ENCODER_INPUTS, ENCODER_OUTPUTS
        )
        self.decoder = self._session(
            ort, self.decoder_path, opts, providers, DECODER_INPUTS, DECODER_OUTPUTS
        )
        self._check_graphs(cfg)
        self.mismatches = [
            p
            for path, sess in ((self.encoder_path, self.encoder), (self.decoder_path, self.decoder))
            for p in check_graph_record(
                path, sess.get_modelmeta().custom_metadata_map, cfg, on_mismatch
            )
        ]
        self._decoder_inputs = [i.name for i in self.decoder.get_inputs()]
        self._buffers: Dict[str, np.ndarray] = {}
        self._post = dict(
            num_frames=self.num_frames,
            coord_reweight=bool(P.TEST.COORD_REWEIGHT),
            oks_nms_thresh=float(P.TEST.OKS_NMS_THRESH),
            oks_sigmas=oks_sigmas_for(self.num_keypoints),
            score_thresh=float(P.TEST.SCORE_THRESH),
        )

    @staticmethod
    def _session(ort, path, opts, providers, inputs, outputs):
        if not os.path.isfile(path):
            int8 = " --int8 FRAMES" if ".int8." in os.path.basename(path) else ""
            raise FileNotFoundError(
                f"ONNX graph not found: {path} (export both graphs with "
                f"tools/deploy/export_model.py{int8})"
            )
        try:
            sess = ort.InferenceSession(path, sess_options=opts, providers=providers)
        except (
            Exception
        ) as e:  # onnxruntime raises its own exception types for unreadable / invalid files
            raise ValueError(f"{path}: not a loadable ONNX graph ({type(e).__name__}: {e})") from e
        have_in = {i.name for i in sess.get_inputs()}
        have_out = {o.name for o in sess.get_outputs()}
        missing = [n for n in inputs if n not in have_in and n != "level_start_index"]
        missing += [n for n in outputs if n not in have_out]
        if missing:
            raise ValueError(
                f"{path}: graph lacks the inputs/outputs {missing} (has inputs {sorted(have_in)}, "
                f"outputs {sorted(have_out)}); not a PAVE-Net export of this version"
            )
        return sess

    def _check_graphs(self, cfg) -> None:
        """The graphs' fixed sizes must be the config's: a graph exported from another config fails here,
        naming the file and the field, instead of producing wrong poses."""
        P = cfg.MODEL.PAVENET
        expect = {
            "num_frames": self.num_frames,
            "num_keypoints": self.num_keypoints,
            "hidden_dim": int(P.HIDDEN_DIM),
        }
        keys = {
            "num_frames": "MODEL.PAVENET.NUM_FRAMES",
            "num_keypoints": "MODEL.PAVENET.NUM_KEYPOINTS",
            "hidden_dim": "MODEL.PAVENET.HIDDEN_DIM",
        }
        dec_out = {o.name: o.shape for o in self.decoder.get_outputs()}
        dec_in = {i.name: i.shape for i in self.decoder.get_inputs()}
        enc_out = {o.name: o.shape for o in self.encoder.get_outputs()}
        # (file, field, axis, what): the static dims ONNX records for each graph.
        checks = [
            (self.decoder_path, "keypoints", dec_out["keypoints"], 1, "num_keypoints"),
            (self.decoder_path, "frame_keypoints", dec_out["frame_keypoints"], 1, "num_frames"),
            (self.decoder_path, "frame_keypoints", dec_out["frame_keypoints"], 2, "num_keypoints"),
            (self.decoder_path, "memory", dec_in["memory"], 0, "num_frames"),
            (self.decoder_path, "memory", dec_in["memory"], 2, "hidden_dim"),
            (self.encoder_path, "memory", enc_out["memory"], 2, "hidden_dim"),
        ]
        for path, field, shape, axis, what in checks:
            got = shape[axis] if len(shape) > axis else None
            if isinstance(got, int) and got != expect[what]:
                raise ValueError(
                    f"{path}: graph field '{field}' has {what}={got} (axis {axis} of {shape}) but the "
                    f"config has {keys[what]}={expect[what]}: the graph was exported from another config"
                )
        for path, sess in ((self.encoder_path, self.encoder), (self.decoder_path, self.decoder)):
            meta = sess.get_modelmeta().custom_metadata_map
            for what in ("num_frames", "num_keypoints"):
                got = meta.get(f"pavenet.{what}")
                if got is not None and int(got) != expect[what]:
                    raise ValueError(
                        f"{path}: metadata 'pavenet.{what}'={got} but the config has "
                        f"{keys[what]}={expect[what]}: the graph was exported from another config"
                    )
            fmt = meta.get("pavenet.input_format")
            if fmt is not None and fmt != cfg.INPUT.FORMAT:
                raise ValueError(
                    f"{path}: metadata 'pavenet.input_format'={fmt} but the config has "
                    f"INPUT.FORMAT={cfg.INPUT.FORMAT}"
                )
        self.topk = dec_out["scores"][0] if isinstance(dec_out["scores"][0], int) else None

    # --- the backend interface of ClipPredictor ----------------------------------------------------
    def encode_frame(self, image) -> Tuple[EncodedFrame, Tuple[int, int]]:
        """uint8 (3, h, w) (tensor or array) in INPUT.FORMAT -> ({field: array}, (h, w))."""
        x = image.numpy() if torch.is_tensor(image) else np.asarray(image)
        if x.ndim != 3 or x.shape[0] != 3:
            raise ValueError(f"encode_frame expects a (3, h, w) image, got shape {x.shape}")
        outs = self.encoder.run(list(ENCODER_OUTPUTS), {"image": x[None].astype(np.float32)})
        return dict(zip(ENCODER_OUTPUTS, outs)), (int(x.shape[1]), int(x.shape[2]))

    def decode_rows(self, frames: List[EncodedFrame]) -> Dict[str, np.ndarray]:
        """The F encoded frames of one clip (t-T..t+T) -> the decoder graph's outputs by name."""
        if len(frames) != self.num_frames:
            raise ValueError(
                f"decode_clip needs the {self.num_frames} frames of one clip, got {len(frames)}"
            )
        shapes = frames[0]["spatial_shapes"]
        for f in frames[1:]:
            if not np.array_equal(f["spatial_shapes"], shapes):
                raise ValueError(
                    "decode_clip: frames were encoded at different sizes "
                    f"({f['spatial_shapes'].tolist()} vs {shapes.tolist()})"
                )
        feed = {
            name: shapes
            if name == "spatial_shapes"
            else self._joined(name, [f[name] for f in frames])
            for name in self._decoder_inputs
        }
        return dict(zip(DECODER_OUTPUTS, self.decoder.run(list(DECODER_OUTPUTS), feed)))

    def _joined(self, name: str, parts: List[np.ndarray]) -> np.ndarray:
        """The F frames' `name` joined on the first axis, into a buffer kept per input and reused while
        the frame size stays: the value maps of a window are ~80 MB at 384 x 640, and a fresh array
        per window costs as much in page faults as the copy itself."""
        shape = (sum(p.shape[0] for p in parts),) + parts[0].shape[1:]
        buf = self._buffers.get(name)
        if buf is None or buf.shape != shape or buf.dtype != parts[0].dtype:
            buf = self._buffers[name] = np.empty(shape, parts[0].dtype)
        return np.concatenate(parts, out=buf)

    def decode_clip(
        self,
        frames: List[EncodedFrame],
        image_size: Tuple[int, int],
        output_size: Optional[Tuple[int, int]] = None,
    ) -> Instances:
        rows = {k: torch.from_numpy(v) for k, v in self.decode_rows(frames).items()}
        inst, _ = postprocess_detections(
            rows["keypoints"],
            rows["sigmas"],
            rows["scores"],
            rows["frame_keypoints"],
            image_size,
            output_size or image_size,
            **self._post,
        )
        return inst
