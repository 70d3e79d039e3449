"""The benchmark's inputs: synthetic BGR videos of walking stick figures (drawn with the synthetic dataset's
helpers) and clip-mapper-style training batches made from them. The cost does not depend on the content."""

from typing import List

import numpy as np
import torch
from detectron2.structures import Instances, Keypoints

__all__ = ["MIN_SIDE", "synthetic_video", "synthetic_train_batch"]

MIN_SIDE = (
    40  # the smallest height / width: the background's shapes need W // 3 > 10 and H // 6 > 4
)


def synthetic_video(
    num_people: int, num_frames: int, height: int, width: int, seed: int = 0
) -> List[np.ndarray]:
    """`num_frames` BGR (height, width, 3) uint8 frames of `num_people` walking stick figures."""
    from pavenet.data import synthetic as syn

    rng = np.random.default_rng(seed)
    bg = syn.textured_background(rng, width, height)
    people = []
    for i in range(num_people):
        # 1 person: a large figure in the middle; 20: a crowd of smaller ones spread over the frame.
        hp = 0.7 * height if num_people == 1 else float(rng.uniform(0.25, 0.45)) * height
        x0 = width / 2 if num_people == 1 else (i + 0.5) * width / num_people
        people.append(
            dict(
                track_id=i,
                hp=hp,
                x0=x0,
                vx=float(rng.uniform(-2, 2)),
                y0=float(rng.uniform(0.55 * hp, height - 0.5 * hp)),
                phase=float(rng.uniform(0, 6.28)),
                freq=0.4,
                arm_amp=0.8,
                arm_base=0.3,
                wave=False,
                leg_amp=0.3,
                lean=0.0,
                torso=tuple(int(c) for c in rng.integers(70, 190, size=3)),
            )
        )
    frames = []
    for t in range(num_frames):
        img = bg.copy()
        for p in people:
            syn.draw_person(img, p, syn.person_pose(p, t))
        frames.append(np.ascontiguousarray(img[:, :, ::-1]))  # RGB -> BGR, as OpenCV reads videos
    return frames


def synthetic_train_batch(
    frames_bgr: List[np.ndarray],
    num_frames: int,
    clips: int,
    num_keypoints: int,
    people: int = 5,
    seed: int = 0,
) -> List[dict]:
    """`clips` clip-mapper-style training dicts: (F, 3, H, W) uint8 RGB images of consecutive frames and
    `people` persons with random visible keypoints (the step's cost does not depend on where they are)."""
    g = torch.Generator().manual_seed(seed)
    h, w = frames_bgr[0].shape[:2]
    out = []
    for c in range(clips):
        idx = [min(c + i, len(frames_bgr) - 1) for i in range(num_frames)]
        images = torch.stack(
            [
                torch.from_numpy(np.ascontiguousarray(frames_bgr[i][:, :, ::-1].transpose(2, 0, 1)))
                for i in idx
            ]
        )
        inst = Instances((h, w))
        kp = torch.rand(people, num_keypoints, 3, generator=g) * torch.tensor([w, h, 1.0])
        kp[..., 2] = 2
        inst.gt_keypoints = Keypoints(kp)
        inst.gt_areas = torch.full((people,), 0.05 * h * w)
        inst.gt_classes = torch.zeros(people, dtype=torch.long)
        out.append({"images": images, "height": h, "width": w, "instances": inst})
    return out
