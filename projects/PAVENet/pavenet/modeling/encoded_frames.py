"""`EncodedFrames`: one or more frames after the spatial encoder, the unit the streaming predictor caches
and the decoders read, and how the decoders' two input layouts map onto per-frame views.

Layouts (`Frames`): an EncodedFrames of the B*F frames of B clips (clip-major, training and the batched
eval forward), or a list of F one-frame (or B-frame) EncodedFrames (the streaming window, not
concatenated). `split_clip_frames` turns either into F per-frame views without a copy.
"""

from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

import torch

__all__ = ["EncodedFrames", "Frames", "split_clip_frames"]


@dataclass
class EncodedFrames:
    """Per-frame encoder output (what the streaming predictor caches), N frames.

    memory (N, S, C); padding_mask (N, S) bool (True = padded); spatial_shapes (L, 2) long (h, w);
    level_start_index (L,) long; valid_ratios (N, L, 2) (w, h) fractions of un-padded area.
    values: None, or (eval) one tensor (N, S, H, D) per decoder layer, pose layers then joint layers:
    each layer's `value_proj` of the memory (padded tokens zeroed as the layer does), computed once per
    frame by `PAVENetHead.encode` so that the F windows containing a frame reuse it. The decoders compute
    it from `memory` when it is None (e.g. an EncodedFrames built from stored memory).
    """

    memory: torch.Tensor
    padding_mask: torch.Tensor
    spatial_shapes: torch.Tensor
    level_start_index: torch.Tensor
    valid_ratios: torch.Tensor
    values: Optional[List[torch.Tensor]] = None

    def __len__(self):
        return self.memory.shape[0]

    def __getitem__(self, idx) -> "EncodedFrames":
        if isinstance(idx, int):
            idx = slice(idx, idx + 1) if idx != -1 else slice(-1, None)
        values = None if self.values is None else [v[idx] for v in self.values]
        return EncodedFrames(
            self.memory[idx],
            self.padding_mask[idx],
            self.spatial_shapes,
            self.level_start_index,
            self.valid_ratios[idx],
            values,
        )

    @staticmethod
    def cat(items: Sequence["EncodedFrames"]) -> "EncodedFrames":
        """Concatenate along frames (a copy). The decoders also take the list itself, without the copy."""
        if not items:
            raise ValueError("EncodedFrames.cat needs at least one item")
        shapes = _same_shapes(items)
        values = None
        if all(i.values is not None for i in items):
            values = [torch.cat(vs) for vs in zip(*(i.values for i in items))]
        return EncodedFrames(
            torch.cat([i.memory for i in items]),
            torch.cat([i.padding_mask for i in items]),
            shapes,
            items[0].level_start_index,
            torch.cat([i.valid_ratios for i in items]),
            values,
        )

    def to(self, device) -> "EncodedFrames":
        values = None if self.values is None else [v.to(device) for v in self.values]
        return EncodedFrames(
            *(
                t.to(device)
                for t in (
                    self.memory,
                    self.padding_mask,
                    self.spatial_shapes,
                    self.level_start_index,
                    self.valid_ratios,
                )
            ),
            values,
        )


# What the decoders take: the B*F frames of B clips, or the list of a clip's F per-frame encodings.
Frames = Union[EncodedFrames, Sequence[EncodedFrames]]


def _same_shapes(items: Sequence[EncodedFrames]) -> torch.Tensor:
    shapes = items[0].spatial_shapes
    for it in items[1:]:
        if it.spatial_shapes is not shapes and not torch.equal(it.spatial_shapes, shapes):
            raise ValueError(
                "EncodedFrames: frames were encoded at different padded sizes "
                f"({it.spatial_shapes.tolist()} vs {shapes.tolist()})"
            )
    return shapes


def split_clip_frames(enc: Frames, num_frames: int) -> List[EncodedFrames]:
    """Decoder input -> F EncodedFrames of B rows each (frame f of every clip), views without a copy.

    enc: EncodedFrames of B*F frames, clip-major (a batch of clips), or a list of F EncodedFrames of
    B frames each, frame-major (the streaming window: each frame's cached encoding, not concatenated).
    """
    f = num_frames
    if isinstance(enc, EncodedFrames):
        n = len(enc)
        if n % f:
            raise ValueError(f"{n} encoded frames is not a multiple of NUM_FRAMES={f}")
        b = n // f

        def frame(t, i):  # (B*F, ...) -> frame i of every clip, (B, ...)
            return t.view(b, f, *t.shape[1:])[:, i]

        return [
            EncodedFrames(
                frame(enc.memory, i),
                frame(enc.padding_mask, i),
                enc.spatial_shapes,
                enc.level_start_index,
                frame(enc.valid_ratios, i),
                None if enc.values is None else [frame(v, i) for v in enc.values],
            )
            for i in range(f)
        ]
    frames = list(enc)
    if len(frames) != f:
        raise ValueError(
            f"the decoders need the NUM_FRAMES={f} frames of a clip, got a list of {len(frames)}"
        )
    if any(len(fr) != len(frames[0]) for fr in frames):
        raise ValueError(f"the F frames hold different clip counts: {[len(fr) for fr in frames]}")
    _same_shapes(frames)
    return frames
