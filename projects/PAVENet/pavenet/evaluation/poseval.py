"""An independent, vectorised re-implementation of PoseTrack's official `poseval` (AP and MOTA).

Written from the rules in `docs/POSETRACK_METRICS.md` (§1-§7); no code is copied from poseval or
py-motmetrics. Only numpy (and scipy's Hungarian solver for the MOT assignment) is needed.

Internally every pose is stored in the model's 15-joint order (`keypoint_meta.POSETRACK_KEYPOINT_NAMES`);
per-joint results are keyed by those PoseTrack18 names. poseval's joint ids only matter when reading the
2017 ("annolist") format, through `keypoint_meta.POSEVAL_ID_FOR_15`.

This module runs the pipeline and is the public entry point (`evaluate`, `evaluate_dirs`); each stage
lives in its own module: `poses.py` (the containers and constants), `readers.py` (2017 / 2018 / COCO
files), `matching.py` (ignore regions, PCKh distances, person assignment), `ap.py` (AP per joint),
`mota.py` (the CLEAR-MOT counters), `results.py` (the results, groups, table and JSON). The names
tests and other modules use are re-exported here.

Pipeline (docs/POSETRACK_METRICS.md §3, order matters):
  1. read GT and prediction files; predictions are paired with GT frames **by position**;
  2. keep only frames whose GT has at least one person (`is_labeled` is never read);
  3. drop persons without a point list (2017 `annopoints: []`);
  4. ignore regions: delete joints strictly inside a polygon (GT and predictions), then persons left
     without joints;
  5. per frame: PCKh@0.5 distances normalised by 0.6 x the GT head-box diagonal, score-free greedy
     person assignment, (score, label) pairs per joint, MOT inputs per joint;
  6. AP per joint pooled over all frames (VOC all-point), MOTA per joint summed over videos.
"""

import glob
import logging
import os
import warnings
from typing import List, Optional, Sequence

import numpy as np

from ..data.keypoint_meta import POSETRACK_KEYPOINT_NAMES  # noqa: F401  (re-exported)
from .ap import pooled_joint_ap
from .matching import (
    DIST_THRESH,
    HEAD_SIZE_FACTOR,
    assign_people,
    pckh_distances,
    points_strictly_inside,
    prepare_frame,
)
from .mota import MOT_COUNTS, MOTAccumulator, clear_mot_metrics, update_empty, update_joints
from .poses import (
    MAX_TRACK_ID,
    MIN_SCORE,
    NO_TRACK_ID,
    NUM_JOINTS,
    GTSequence,
    Poses,
    PoseTrackFormatError,
    predictions_from_arrays,
)
from .readers import (
    frame_name,
    parse_posetrack,
    parse_predictions,
    read_gt,
    read_gt_sequence,
    read_predictions,
)
from .results import GROUP_NAMES, TABLE_COLUMNS, PoseTrackResults, format_table

__all__ = [
    "evaluate",
    "evaluate_dirs",
    "read_dirs",
    "check_track_ids",
    "check_gt_track_ids",
    # re-exported from the stage modules
    "DIST_THRESH",
    "HEAD_SIZE_FACTOR",
    "MAX_TRACK_ID",
    "MIN_SCORE",
    "NO_TRACK_ID",
    "NUM_JOINTS",
    "GROUP_NAMES",
    "TABLE_COLUMNS",
    "POSETRACK_KEYPOINT_NAMES",
    "GTSequence",
    "Poses",
    "PoseTrackFormatError",
    "PoseTrackResults",
    "MOTAccumulator",
    "assign_people",
    "format_table",
    "parse_posetrack",
    "parse_predictions",
    "pckh_distances",
    "points_strictly_inside",
    "predictions_from_arrays",
    "prepare_frame",
    "read_gt",
    "read_gt_sequence",
    "read_predictions",
]

logger = logging.getLogger(__name__)


def evaluate(
    gt_seqs: Sequence[GTSequence], predictions: Sequence[Sequence[Poses]], eval_track: bool = True
) -> PoseTrackResults:
    """AP (and MOTA when `eval_track`) of `predictions[s][i]` (the people predicted in frame i of GT
    sequence s) against `gt_seqs`. Frame counts must match (see `parse_predictions`)."""
    if len(gt_seqs) != len(predictions):
        raise ValueError(f"{len(gt_seqs)} GT sequences but {len(predictions)} prediction sequences")
    score_chunks: List[np.ndarray] = []  # per evaluated frame: (P, 15) scores
    label_chunks: List[np.ndarray] = []  # (P, 15) labels
    has_chunks: List[np.ndarray] = []  # (P, 15) joint predicted
    n_gt = np.zeros(NUM_JOINTS)
    counts = {k: np.zeros(NUM_JOINTS, dtype=np.int64) for k in MOT_COUNTS}
    total_distance = np.zeros(NUM_JOINTS)
    n_frames = 0
    for seq, pred_frames in zip(gt_seqs, predictions):
        if len(pred_frames) != len(seq):
            raise PoseTrackFormatError(
                f"{seq.path}: {len(pred_frames)} prediction frames for {len(seq)} GT frames of {seq.name}"
            )
        # Only frames whose GT has people are evaluated; predictions elsewhere are ignored entirely.
        frame_ids = [i for i, f in enumerate(seq.frames) if len(f) > 0]
        n_frames += len(frame_ids)
        if eval_track and len(frame_ids) == 1:
            logger.warning(
                "%s: only one evaluated frame; poseval's tracking evaluation would crash on it "
                "(it skips the last frame), so it adds nothing to MOTA",
                seq.name,
            )
        accs = [MOTAccumulator() for _ in range(NUM_JOINTS)] if eval_track else None
        for t, fi in enumerate(frame_ids):
            gt, pred = prepare_frame(seq.frames[fi], pred_frames[fi], seq.ignore[fi])
            n_gt += gt.present.sum(axis=0)
            feed_mot = (
                eval_track and t < len(frame_ids) - 1
            )  # poseval skips each video's last frame
            if len(pred) == 0:
                if feed_mot:
                    update_empty(accs)
                continue
            if len(gt) == 0:  # every predicted joint is a false positive
                labels = np.zeros((len(pred), NUM_JOINTS), dtype=bool)
                if feed_mot:
                    update_empty(accs)
            else:
                d = pckh_distances(gt, pred)  # (P, G, 15)
                match = d <= DIST_THRESH
                assigned = assign_people(match, gt.present)
                rows = np.arange(len(pred))
                labels = np.where(
                    (assigned >= 0)[:, None], match[rows, np.maximum(assigned, 0)], False
                )
                if feed_mot:
                    update_joints(accs, gt, pred, d, DIST_THRESH)
            score_chunks.append(pred.scores)
            label_chunks.append(labels)
            has_chunks.append(pred.present)
        if eval_track:
            for k, acc in enumerate(accs):
                for name in counts:
                    counts[name][k] += getattr(acc, name)
                total_distance[k] += acc.total_distance

    ap, pre, rec = pooled_joint_ap(score_chunks, label_chunks, has_chunks, n_gt)
    mot = clear_mot_metrics(counts, total_distance) if eval_track else {}
    return PoseTrackResults(
        ap=ap,
        precision=pre,
        recall=rec,
        num_gt=n_gt,
        mot_counts=counts if eval_track else None,
        num_frames=n_frames,
        num_sequences=len(gt_seqs),
        **mot,
    )


def check_gt_track_ids(gt_seqs: Sequence[GTSequence]) -> None:
    """MOTA needs a track id on every GT person; raise naming the GT file otherwise. The evaluator CLI and
    the in-training evaluator (TEST.POSETRACK.EVAL_TRACKING) both refuse through this."""
    for seq in gt_seqs:
        for fi, g in enumerate(seq.frames):
            if (g.track_ids == NO_TRACK_ID).any():
                frame = frame_name(seq.images[fi]) if fi < len(seq.images) else "?"
                raise PoseTrackFormatError(
                    f"{seq.path}: GT person {int(np.argmax(g.track_ids == NO_TRACK_ID))} without track_id in frame "
                    f"{fi} ({frame}); MOTA needs field 'track_id' on every person: evaluate AP only (--no-track; "
                    "TEST.POSETRACK.EVAL_TRACKING False)"
                )


def check_track_ids(
    gt_seqs: Sequence[GTSequence],
    predictions: Sequence[Sequence[Poses]],
    pred_paths: Optional[Sequence[str]] = None,
) -> None:
    """Tracking needs a track id on every person (GT and predictions); raise naming the file otherwise."""
    check_gt_track_ids(gt_seqs)
    for si, (seq, frames) in enumerate(zip(gt_seqs, predictions)):
        for fi, p in enumerate(frames):
            frame = frame_name(seq.images[fi]) if fi < len(seq.images) else "?"
            if (p.track_ids == NO_TRACK_ID).any():
                where = pred_paths[si] if pred_paths else f"predictions for {seq.name}"
                raise PoseTrackFormatError(
                    f"{where}: person {int(np.argmax(p.track_ids == NO_TRACK_ID))} without track_id in frame {fi} "
                    f"({frame}); tracking (MOTA) needs field 'track_id' on every person: write track ids, or "
                    "evaluate AP only (--no-track; TEST.POSETRACK.EVAL_TRACKING False)"
                )


def evaluate_dirs(gt_path: str, pred_dir: str, eval_track: bool = True) -> PoseTrackResults:
    """poseval over a GT directory (or one COCO-style GT JSON) and a directory of prediction files named like
    the GT sequences. A missing prediction file is warned about and its frames count as misses."""
    gt_seqs, preds, paths = read_dirs(gt_path, pred_dir)
    if eval_track:
        check_track_ids(gt_seqs, preds, paths)
    return evaluate(gt_seqs, preds, eval_track=eval_track)


def read_dirs(gt_path: str, pred_dir: str):
    """The GT sequences of `gt_path` and, per sequence, the predicted people of each frame from `pred_dir`
    (a missing file: warned about, every frame empty) -> (gt_seqs, predictions, prediction file paths)."""
    if not os.path.isdir(pred_dir):
        raise PoseTrackFormatError(f"{pred_dir}: prediction directory does not exist")
    gt_seqs = read_gt(gt_path)
    if not any(len(poses) for seq in gt_seqs for poses in seq.frames):
        raise PoseTrackFormatError(
            f"{gt_path}: no GT frame has a person ({len(gt_seqs)} sequences), so nothing "
            "can be evaluated; expected annotated frames (field 'annotations')"
        )
    written = sorted(glob.glob(os.path.join(pred_dir, "*.json")))
    if not written:
        raise PoseTrackFormatError(
            f"{pred_dir}: no *.json prediction files; expected one per GT sequence, named like the GT files "
            f"(e.g. {gt_seqs[0].name}.json)"
        )
    if not any(os.path.isfile(os.path.join(pred_dir, seq.name + ".json")) for seq in gt_seqs):
        raise PoseTrackFormatError(
            f"{pred_dir}: none of its {len(written)} prediction files is named like a GT sequence of {gt_path} "
            f"(found {', '.join(os.path.basename(w) for w in written[:3])}; expected e.g. {gt_seqs[0].name}.json): "
            "wrong folder or split?"
        )
    preds, paths = [], []
    for seq in gt_seqs:
        path = os.path.join(pred_dir, seq.name + ".json")
        paths.append(path)
        if not os.path.isfile(path):
            msg = f"{path}: prediction file missing; its {len(seq)} frames count as misses"
            logger.warning(msg)
            warnings.warn(msg)
            preds.append([Poses.empty() for _ in range(len(seq))])
            continue
        preds.append(read_predictions(path, seq))
    return gt_seqs, preds, paths
