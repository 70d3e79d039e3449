"""`ClipPredictor`: PAVE-Net on a video, one key frame at a time, in constant memory.

Like detectron2's `DefaultPredictor` (build the model, load MODEL.WEIGHTS, eval mode, the test
`ResizeShortestEdge`, BGR to INPUT.FORMAT), with two ways to slide the F = 2T+1 frame window over a
video, one frame per step, replicating the first / last frame at the borders (as the clip mapper does):

* `stream(frames)` (cached): each frame goes through the backbone, neck, spatial encoder and the
  decoders' value projections ONCE (`backend.encode_frame`); the F windows that contain it reuse that
  output from a deque of F entries, passed to `backend.decode_clip` as a list (not concatenated), and
  only the decoders' per-query work runs per window.
* `stream_video(read_frame, length, keys)` (cached, evaluation): the same, for chosen key frames of a
  video read by position; only the frames their clips use are read and encoded, each once.
* `window(frames)` (uncached): the full eval forward on every window's F frames, as the official demo does.

The two heavy operations come from a backend: `TorchClipModel` (the PyTorch model's `encode_frames` /
`decode_clip`, the default) or `pavenet.export.OrtClipModel` (the exported ONNX graphs in ONNX Runtime);
windowing, caching, filtering (and the demo's tracking) are the same for both.

Both modes keep at most F frames / encodings alive, so memory is constant in the video's length. Both yield
`(frame_index, frame_bgr, instances)` per input frame, T frames after it has been read, with `instances`
in the original frame's pixels (fields of the model's eval output: `pred_keypoints` (k, K, 3), `scores`
(k,), `pred_boxes`, `pred_classes`, `pred_frame_keypoints` (k, F, K, 2)), filtered by
MODEL.PAVENET.TEST.SCORE_THRESH.
"""

from typing import Any, Callable, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from detectron2.structures import Instances

from pavenet.data.clip_sampler import clips_from_frames, frames_for_clips, sliding_windows

__all__ = ["ClipPredictor", "TorchClipModel", "sliding_windows"]


def _import_model_registry():
    # Registers PAVENet in META_ARCH_REGISTRY.
    import pavenet.modeling  # noqa: F401


def _checkpointer(model, cfg):
    # The project checkpointer: weights_only-safe loading of local files (torch >= 2.6 defaults to it).
    from pavenet.checkpoint import PAVENetCheckpointer

    return PAVENetCheckpointer(model, weights_mismatch=cfg.MODEL.PAVENET.WEIGHTS_MISMATCH)


class TorchClipModel:
    """The PyTorch backend of `ClipPredictor`: a PAVENet model's streaming operations.

    encode_frame: uint8 (3, h, w) -> (EncodedFrames of 1 frame, (h, w)); decode_clip: the F EncodedFrames
    of one clip (t-T..t+T), un-padded input (h, w), output (height, width) -> key-frame Instances (CPU).
    """

    def __init__(self, model: torch.nn.Module, num_frames: int, compile_encoder: bool = False):
        self.model = model.eval()
        self.num_frames = int(num_frames)
        self.device = next(model.parameters()).device
        self._compiled = None
        if (
            compile_encoder
        ):  # opt-in: torch.compile with frozen weights (pavenet.inference.compiled)
            from .compiled import compiled_encoder

            self._compiled = compiled_encoder(self.model)

    def encode_frame(self, image: torch.Tensor):
        images, image_size = self.model.preprocess_frames(image[None].to(self.device))
        encode = self._compiled or self.model.encode_frames
        return encode(images), image_size

    def decode_clip(self, frames: Sequence[Any], image_size, output_size) -> Instances:
        # The F one-frame encodings (with their cached decoder value maps) as a list: no concatenation.
        return self.model.decode_clip(
            list(frames), image_size=image_size, output_size=output_size
        ).to("cpu")


class ClipPredictor:
    """Streaming / window inference of a PAVE-Net model on one video at a time.

    Args:
        cfg: a config with the PAVE-Net keys; MODEL.WEIGHTS "" keeps the random initialisation.
        model: optional already-built model (in eval mode), e.g. to share it between predictors.
        backend: optional backend with `encode_frame` / `decode_clip` (e.g. `pavenet.export.OrtClipModel`);
            then no PyTorch model is built and `self.model` is None.
        compile_encoder: encode frames through `torch.compile` with frozen weights (`inference.compiled`;
            PyTorch backend only, opt-in: the first frame of each size compiles).
    """

    def __init__(
        self,
        cfg,
        model: Optional[torch.nn.Module] = None,
        backend=None,
        compile_encoder: bool = False,
    ):
        self.cfg = cfg.clone()
        if backend is None:
            if model is None:
                _import_model_registry()
                model = build_model(self.cfg)
                if self.cfg.MODEL.WEIGHTS:
                    _checkpointer(model, self.cfg).load(self.cfg.MODEL.WEIGHTS)
            backend = TorchClipModel(model, self.cfg.MODEL.PAVENET.NUM_FRAMES, compile_encoder)
        elif model is not None:
            raise ValueError("ClipPredictor: pass a model or a backend, not both")
        self.backend = backend
        self.model = getattr(backend, "model", None)
        if int(backend.num_frames) != int(self.cfg.MODEL.PAVENET.NUM_FRAMES):
            raise ValueError(
                f"backend runs F={backend.num_frames} frames but MODEL.PAVENET.NUM_FRAMES is "
                f"{self.cfg.MODEL.PAVENET.NUM_FRAMES}"
            )
        self.num_frames = int(self.cfg.MODEL.PAVENET.NUM_FRAMES)
        self.score_thresh = float(self.cfg.MODEL.PAVENET.TEST.SCORE_THRESH)
        self.aug = T.ResizeShortestEdge(
            [self.cfg.INPUT.MIN_SIZE_TEST, self.cfg.INPUT.MIN_SIZE_TEST],
            self.cfg.INPUT.MAX_SIZE_TEST,
        )
        self.input_format = self.cfg.INPUT.FORMAT
        if self.input_format not in ("RGB", "BGR"):
            raise ValueError(f"INPUT.FORMAT must be RGB or BGR, got {self.input_format}")
        self.device = backend.device

    # --- per-frame preparation -------------------------------------------------------------------
    def _make_prepare(self) -> Callable[[np.ndarray], torch.Tensor]:
        """Returns frame_bgr (H, W, 3) uint8 -> uint8 tensor (3, h, w) in INPUT.FORMAT. The resize is
        computed from the video's first frame once and applied to every frame (all frames of a video
        then share one size, which the windows and the padding need)."""
        state = {}

        def prepare(frame_bgr: np.ndarray) -> torch.Tensor:
            if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
                raise ValueError(f"frames must be (H, W, 3) BGR uint8, got shape {frame_bgr.shape}")
            if "tfm" not in state:
                state["tfm"] = self.aug.get_transform(frame_bgr)
                state["size"] = frame_bgr.shape[:2]
            elif frame_bgr.shape[:2] != state["size"]:
                raise ValueError(
                    f"frame size changed within a video: {frame_bgr.shape[:2]} vs {state['size']}"
                )
            img = frame_bgr[:, :, ::-1] if self.input_format == "RGB" else frame_bgr
            img = state["tfm"].apply_image(np.ascontiguousarray(img))
            return torch.as_tensor(np.ascontiguousarray(img.transpose(2, 0, 1)))

        return prepare

    def prepare(self, frame_bgr: np.ndarray) -> torch.Tensor:
        """One frame's network input: BGR (H, W, 3) uint8 -> uint8 tensor (3, h, w) in INPUT.FORMAT, resized
        by the test resize (as the first frame of a video is; `encode` takes it)."""
        return self._make_prepare()(frame_bgr)

    def _filter(self, instances: Instances) -> Instances:
        # The model applies SCORE_THRESH too; filtering here keeps it true for a model passed in.
        if self.score_thresh > 0 and len(instances):
            instances = instances[instances.scores >= self.score_thresh]
        return instances

    # --- cached streaming mode ---------------------------------------------------------------
    @torch.no_grad()
    def encode(self, image: torch.Tensor):
        """uint8 (3, h, w) -> (the backend's encoding of 1 frame, image_size (h, w)): backbone, neck, encoder."""
        return self.backend.encode_frame(image)

    def _encoded(
        self, frames: Iterable[Tuple[Any, np.ndarray]], prepare
    ) -> Iterator[Tuple[Any, tuple]]:
        """(tag, frame_bgr) -> (tag, (frame_bgr, EncodedFrames of the frame, image_size)), one encode each."""
        for tag, frame in frames:
            feats, image_size = self.encode(prepare(frame))
            yield tag, (frame, feats, image_size)

    def _decode_window(self, window: List[tuple]) -> Instances:
        """The one decoding step of every cached path (demo, benchmark, evaluation): F encoded frames
        (frame_bgr, EncodedFrames, image_size), key frame in the middle -> key-frame Instances in the
        original frame's pixels."""
        frame, _, image_size = window[self.num_frames // 2]
        return self._filter(
            self.backend.decode_clip([w[1] for w in window], image_size, frame.shape[:2])
        )

    @torch.no_grad()
    def stream(self, frames: Iterable[np.ndarray]) -> Iterator[Tuple[int, np.ndarray, Instances]]:
        """Cached mode: yields (frame_index, frame_bgr, instances) for every frame of `frames`."""
        encoded = (
            item for _, item in self._encoded(((None, f) for f in frames), self._make_prepare())
        )
        for key, window in sliding_windows(encoded, self.num_frames):
            yield key, window[self.num_frames // 2][0], self._decode_window(window)

    @torch.no_grad()
    def stream_video(
        self, read_frame: Callable[[int], np.ndarray], video_length: int, key_indices: Sequence[int]
    ) -> Iterator[Tuple[int, Instances]]:
        """Cached mode on a video read by position (evaluation): yields (key_index, instances) for each of
        `key_indices`, in increasing order. `read_frame(i)` returns frame i (BGR); only the frames some
        key frame's clip uses are read, each once and encoded once. Clip borders replicate the first /
        last frame of the video exactly as the training / evaluation clip sampler does."""
        needed = frames_for_clips(key_indices, self.num_frames, video_length)
        encoded = self._encoded(((i, read_frame(i)) for i in needed), self._make_prepare())
        for key, window in clips_from_frames(encoded, key_indices, self.num_frames, video_length):
            yield key, self._decode_window(window)

    # --- uncached window mode ----------------------------------------------------------------
    @torch.no_grad()
    def window(self, frames: Iterable[np.ndarray]) -> Iterator[Tuple[int, np.ndarray, Instances]]:
        """Uncached mode: the model's full eval forward on each window's F frames."""
        prepare = self._make_prepare()
        items = ((frame, prepare(frame)) for frame in frames)
        for key, window in sliding_windows(items, self.num_frames):
            frame = window[self.num_frames // 2][0]
            yield (
                key,
                frame,
                self._filter(self.predict_clip([w[1] for w in window], frame.shape[:2])),
            )

    @torch.no_grad()
    def predict_clip(self, images: List[torch.Tensor], output_size: Tuple[int, int]) -> Instances:
        """Eval forward on one clip: F uint8 (3, h, w) tensors (frames t-T..t+T, already resized). A backend
        without a PyTorch model encodes the F frames (uncached) and decodes them."""
        if self.model is None:
            encoded = [self.backend.encode_frame(im) for im in images]
            return self.backend.decode_clip([e[0] for e in encoded], encoded[0][1], output_size)
        clip = torch.stack(images).to(self.device)
        inputs = [{"images": clip, "height": int(output_size[0]), "width": int(output_size[1])}]
        return self.model(inputs)[0]["instances"].to("cpu")

    def __call__(self, frames_bgr: List[np.ndarray]) -> Instances:
        """DefaultPredictor-style: F BGR frames (t-T..t+T) -> Instances of the key frame, filtered only by
        MODEL.PAVENET.TEST.SCORE_THRESH."""
        if len(frames_bgr) != self.num_frames:
            raise ValueError(
                f"expected {self.num_frames} frames (MODEL.PAVENET.NUM_FRAMES), got {len(frames_bgr)}"
            )
        prepare = self._make_prepare()
        key = frames_bgr[self.num_frames // 2]
        return self._filter(self.predict_clip([prepare(f) for f in frames_bgr], key.shape[:2]))
