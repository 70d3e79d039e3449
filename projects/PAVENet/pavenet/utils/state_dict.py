"""How a state dict differs from a model's: one description for the checkpointer (MODEL.WEIGHTS that do not
fit) and the official-checkpoint converter (a converted state dict that does not fit its target)."""

from typing import Mapping, Optional

__all__ = ["KNOWN_JOINT_COUNTS", "state_dict_mismatch"]

KNOWN_JOINT_COUNTS = (15, 17)  # PoseTrack, COCO


def _strip_common_prefix(names, prefix="module."):
    # fvcore strips a DataParallel / DDP "module." prefix when every key has it; compare the same way.
    if names and all(n.startswith(prefix) for n in names):
        return {n[len(prefix) :]: n for n in names}
    return {n: n for n in names}


def _examples(names, limit=3):
    names = sorted(names)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _areas(names):
    """The first two name components of the differing tensors, e.g. ['backbone.bottom_up', 'transformer.encoder']."""
    return sorted({".".join(n.split(".")[:2]) for n in names})


def state_dict_mismatch(
    model_sd: Mapping, ckpt_sd: Mapping, num_keypoints: Optional[int] = None
) -> str:
    """'' when `ckpt_sd` (name -> tensor / array) holds exactly the model's tensors with the model's shapes;
    otherwise a description naming the tensors that differ (with both shapes), the missing and the
    unexpected ones, the model areas they lie in and, when the shapes say so, the joint count."""
    ckpt_names = _strip_common_prefix(list(ckpt_sd))
    shapes = [
        (n, tuple(ckpt_sd[orig].shape), tuple(model_sd[n].shape))
        for n, orig in ckpt_names.items()
        if n in model_sd and tuple(ckpt_sd[orig].shape) != tuple(model_sd[n].shape)
    ]
    missing = [n for n in model_sd if n not in ckpt_names]
    unexpected = [n for n in ckpt_names if n not in model_sd]
    if not (shapes or missing or unexpected):
        return ""
    parts = []
    if shapes:
        shown = "; ".join(
            f"{n}: checkpoint {list(c)}, model {list(m)}" for n, c, m in sorted(shapes)[:3]
        )
        more = f"; and {len(shapes) - 3} more" if len(shapes) > 3 else ""
        parts.append(f"{len(shapes)} tensors differ in shape ({shown}{more})")
    if missing:
        parts.append(
            f"{len(missing)} model tensors are not in the checkpoint ({_examples(missing)})"
        )
    if unexpected:
        parts.append(
            f"{len(unexpected)} checkpoint tensors are not in the model ({_examples(unexpected)})"
        )
    areas = _areas([s[0] for s in shapes] + missing + unexpected)
    parts.append(
        f"in {', '.join(areas[:8])}"
        + (f" and {len(areas) - 8} more modules" if len(areas) > 8 else "")
    )
    joints = _checkpoint_joint_count(shapes, num_keypoints)
    if joints is not None:
        parts.append(
            f"the shapes say the checkpoint has {joints} joints and the model MODEL.PAVENET.NUM_KEYPOINTS = "
            f"{num_keypoints}"
            + (
                " (COCO -> PoseTrack: convert with --coco-to-posetrack)"
                if (joints, num_keypoints) == (17, 15)
                else ""
            )
        )
    return "; ".join(parts)


def _checkpoint_joint_count(shapes, num_keypoints):
    """The joint count K' (15 or 17) when every shape difference is m*K in the model and m*K' in the
    checkpoint (keypoint-indexed tensors: K, 2K, ... rows); None otherwise."""
    if not shapes or not num_keypoints:
        return None
    votes, direct = set(), False
    for _, c, m in shapes:
        if len(c) != len(m):
            return None
        for dc, dm in zip(c, m):
            if dc == dm:
                continue
            per_joint = (
                dm // num_keypoints
            )  # e.g. 1 (heatmap), 2 (x, y), heads x points x 2 (offsets)
            if dm % num_keypoints or dc % per_joint:
                return None
            votes.add(dc // per_joint)
            direct = (
                direct or per_joint <= 2
            )  # at least one plainly per-joint tensor (not just "300 queries")
    joints = votes.pop() if len(votes) == 1 and direct else None
    return joints if joints in KNOWN_JOINT_COUNTS else None  # not "5 joints" for 10 vs 30 queries
