"""`PoseTrackEvaluator`: detectron2 DatasetEvaluator giving poseval's per-joint AP (and MOTA).

Chosen by the Trainer through metadata `evaluator_type="posetrack"`. GT comes from the constructor's
`gt_dir`, else the metadata `gt_dir`, `annotations` or `json_file`: a directory of per-sequence PoseTrack
2017/2018/21 JSONs, or one COCO-style JSON that is split per video. Each evaluation also reports what
duplicate detections cost (`duplicates.py`: AP-without-duplicates, and "duplicates" in posetrack_metrics.json).
"""

import logging
import os
from collections import OrderedDict
from typing import Dict, List, Optional

import numpy as np
from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from . import poseval
from .duplicates import duplicate_report
from .writer import atomic_write_json, build_posetrack18_sequence, coco_keypoint_results

logger = logging.getLogger(__name__)


def _frame_key(file_name) -> str:
    """`.../<video dir>/<frame file>` -> `<video dir>/<frame stem>`: matches predictions to GT frames whatever
    the image root or extension."""
    file_name = str(file_name).replace("\\", "/")
    return (
        os.path.basename(os.path.dirname(file_name))
        + "/"
        + os.path.splitext(os.path.basename(file_name))[0]
    )


class PoseTrackEvaluator(DatasetEvaluator):
    """Per-joint AP under PCKh@0.5 and per-joint MOTA, exactly as the official poseval.

    process(): inputs give `image_id`, `video_id`, `frame_index`, `file_name`; outputs[i]["instances"] gives
    `pred_keypoints` (k, 15, 3) x, y, score in original pixels, `scores` (k,), optional `pred_track_ids` (k,).
    evaluate(): writes `<output_dir>/posetrack_predictions/<sequence>.json` (PoseTrack18, every GT frame) and
    `<output_dir>/keypoint_results.json`, then returns `{"posetrack": {"AP": .., "AP-Head": .., ...}}` in percent.
    MOTA is computed when `eval_tracking` is True or every output carries `pred_track_ids`.
    """

    def __init__(
        self,
        dataset_name: str,
        output_dir: Optional[str] = None,
        *,
        distributed: bool = True,
        eval_tracking: Optional[bool] = None,
        gt_dir: str = "",
        joint_score_thresh: Optional[float] = None,
    ):
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._distributed = distributed
        self._eval_tracking = eval_tracking
        self._joint_score_thresh = joint_score_thresh
        meta = MetadataCatalog.get(dataset_name)
        # `gt_dir` (per-sequence poseval GT, e.g. PoseTrack17's annolist files next to a COCO-style training
        # json) wins over `annotations` (the loader's input, also usable as GT: a directory or one COCO json).
        self._gt_path = (
            gt_dir
            or meta.get("gt_dir", None)
            or meta.get("annotations", None)
            or meta.get("json_file", None)
            or ""
        )
        self._cpu_device = "cpu"
        if eval_tracking and self._gt_path and os.path.exists(self._gt_path):
            # Refuse before inference, as the evaluator CLI does: MOTA over GT without track ids is meaningless.
            poseval.check_gt_track_ids(poseval.read_gt(self._gt_path))
        self.reset()

    def reset(self):
        self._predictions: List[dict] = []

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            inst = out["instances"].to(self._cpu_device)
            kpts = (
                inst.pred_keypoints.detach().numpy().astype(np.float32)
                if len(inst)
                else np.zeros((0, poseval.NUM_JOINTS, 3), np.float32)
            )
            if kpts.ndim != 3 or kpts.shape[1:] != (poseval.NUM_JOINTS, 3):
                raise ValueError(
                    f"PoseTrackEvaluator expects pred_keypoints (k, {poseval.NUM_JOINTS}, 3) in the "
                    f"PoseTrack 15-joint order, got {tuple(kpts.shape)} for {inp.get('file_name')}"
                )
            scores = (
                inst.scores.detach().numpy().astype(np.float32)
                if len(inst)
                else np.zeros(0, np.float32)
            )
            tids = None
            if inst.has("pred_track_ids"):
                tids = inst.pred_track_ids.detach().numpy().astype(np.int64)
            # Compact per-frame record: small to gather across ranks.
            self._predictions.append(
                {
                    "image_id": inp.get("image_id"),
                    "video_id": inp.get("video_id"),
                    "frame_index": inp.get("frame_index"),
                    "file_name": inp.get("file_name"),
                    "keypoints": kpts.reshape(-1, poseval.NUM_JOINTS, 3),
                    "scores": scores.reshape(-1),
                    "track_ids": tids,
                }
            )

    # --------------------------------------------------------------------------------------------
    def evaluate(self):
        if self._distributed:
            comm.synchronize()
            gathered = comm.gather(self._predictions, dst=0)
            if not comm.is_main_process():
                return {}
            predictions = [p for chunk in gathered for p in chunk]
        else:
            predictions = self._predictions
        predictions = self._deduplicate(predictions)
        if not predictions:
            logger.warning("[PoseTrackEvaluator] no predictions for %s", self._dataset_name)

        if self._output_dir:
            atomic_write_json(
                os.path.join(self._output_dir, "keypoint_results.json"),
                coco_keypoint_results(predictions),
            )

        if not self._gt_path or not os.path.exists(self._gt_path):
            logger.warning(
                "[PoseTrackEvaluator] no GT annotations for %s (%r): wrote predictions for server "
                "submission only",
                self._dataset_name,
                self._gt_path,
            )
            return {}

        gt_seqs = poseval.read_gt(self._gt_path)
        eval_track = self._want_tracking(predictions)
        pred_dicts = self._sequence_files(gt_seqs, predictions)
        pred_frames, paths = [], []
        for seq in gt_seqs:
            path = (
                os.path.join(self._output_dir, "posetrack_predictions", seq.name + ".json")
                if self._output_dir
                else f"<predictions for {seq.name}>"
            )
            paths.append(path)
            if self._output_dir:
                atomic_write_json(path, pred_dicts[seq.name])
            # Evaluate exactly what was written: the same parser poseval's input goes through.
            pred_frames.append(poseval.parse_predictions(pred_dicts[seq.name], path, seq))
        if eval_track:
            poseval.check_track_ids(gt_seqs, pred_frames, paths)
        results = poseval.evaluate(gt_seqs, pred_frames, eval_track=eval_track)
        # What duplicate detections cost under poseval's score-free assignment (the NMS-free vs NMS gap).
        duplicates = duplicate_report(gt_seqs, pred_frames, ap=results.to_json()["ap"]["total"])

        logger.info(
            "PoseTrack evaluation of %s (%d sequences, %d evaluated frames):\n%s\nduplicates: %s",
            self._dataset_name,
            results.num_sequences,
            results.num_frames,
            poseval.format_table(results),
            duplicates.summary(),
        )
        flat: Dict[str, float] = OrderedDict()
        for metric, groups in results.summary().items():
            flat[metric] = groups["Mean"]
            for g in poseval.GROUP_NAMES:
                flat[f"{metric}-{g}"] = groups[g]
        for name, v in zip(poseval.POSETRACK_KEYPOINT_NAMES, results.ap):
            flat[f"AP-{name}"] = float(v)
        flat["AP-without-duplicates"] = duplicates.ap_without_duplicates
        if self._output_dir:
            atomic_write_json(
                os.path.join(self._output_dir, "posetrack_metrics.json"),
                dict(results.to_json(), duplicates=duplicates.to_json()),
            )
        return OrderedDict({"posetrack": flat})

    # --------------------------------------------------------------------------------------------
    def _want_tracking(self, predictions) -> bool:
        have_ids = bool(predictions) and all(p["track_ids"] is not None for p in predictions)
        if self._eval_tracking and not have_ids:
            logger.warning(
                "[PoseTrackEvaluator] eval_tracking requested but outputs carry no pred_track_ids; "
                "computing AP only"
            )
        # eval_tracking=False (the config default) turns MOTA off; None means "whenever ids are present".
        return have_ids and self._eval_tracking is not False

    @staticmethod
    def _deduplicate(predictions: List[dict]) -> List[dict]:
        """One prediction per frame (distributed samplers may repeat clips); keep the first."""
        seen, out = set(), []
        for p in predictions:
            key = p["image_id"] if p["image_id"] is not None else (p["video_id"], p["frame_index"])
            if key in seen:
                continue
            seen.add(key)
            out.append(p)
        return out

    def _sequence_files(self, gt_seqs, predictions) -> Dict[str, dict]:
        """Place every prediction on its GT frame (by `<video dir>/<frame>` of the file name, else the image id,
        else (video_id, frame_index)) and build one PoseTrack18 dict per GT sequence covering all its frames."""
        by_file, by_id, by_pos = {}, {}, {}
        for si, seq in enumerate(gt_seqs):
            for fi, im in enumerate(seq.images):
                if im.get("file_name"):
                    by_file[_frame_key(im["file_name"])] = (si, fi)
                if im.get("id") is not None:
                    by_id[im["id"]] = (si, fi)
                by_pos[(seq.name, fi)] = (si, fi)
        people = [[[] for _ in range(len(seq))] for seq in gt_seqs]
        unplaced = 0
        for p in predictions:
            loc = None
            if p.get("file_name"):
                loc = by_file.get(_frame_key(p["file_name"]))
            if loc is None and p.get("image_id") is not None:
                loc = by_id.get(p["image_id"])
            if loc is None and p.get("video_id") is not None and p.get("frame_index") is not None:
                loc = by_pos.get((str(p["video_id"]), int(p["frame_index"])))
            if loc is None:
                unplaced += 1
                continue
            si, fi = loc
            tids = p["track_ids"] if p["track_ids"] is not None else np.arange(len(p["scores"]))
            for kp, score, tid in zip(p["keypoints"], p["scores"], tids):
                people[si][fi].append(
                    {"keypoints": kp, "score": float(score), "track_id": int(tid)}
                )
        if unplaced:
            logger.warning(
                "[PoseTrackEvaluator] %d predicted frames match no GT frame of %s; ignored",
                unplaced,
                self._gt_path,
            )
        missing = [seq.name for seq, frames in zip(gt_seqs, people) if not any(frames)]
        if missing:
            logger.warning(
                "[PoseTrackEvaluator] %d GT sequences have no predictions (their people count as "
                "misses): %s",
                len(missing),
                ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""),
            )
        return {
            seq.name: build_posetrack18_sequence(seq.images, frames, self._joint_score_thresh)
            for seq, frames in zip(gt_seqs, people)
        }
