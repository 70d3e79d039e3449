"""The main job behind tools/quickstart.py (`make demo`): train the tiny PAVE-Net on the synthetic PoseTrack
videos on CPU with one seed, evaluate it NMS-free (the paper's protocol) and with OKS-NMS, record the
learning curve, render GT | prediction for one val video as predictions.gif, and write metrics.json (the
evaluator CLI's schema plus the learning curve, seed and timing; the per-iteration training events go to
train_metrics.json). `run_quickstart` is the entry point."""

import json
import os
import time
from typing import Sequence

import cv2
import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import hooks
from detectron2.modeling import build_model
from detectron2.utils.env import seed_all_rng
from detectron2.utils.events import JSONWriter
from detectron2.utils.logger import setup_logger
from detectron2.utils.visualizer import Visualizer
from PIL import Image
from tqdm import tqdm

from .. import modeling  # noqa: F401  (registers the PAVE-Net meta-architecture for build_model)
from ..config import load_pavenet_config
from ..data.dataset_mapper import PoseTrackClipDatasetMapper
from ..data.synthetic import ensure_synthetic_dataset
from ..engine.hooks import ProgressBarHook
from ..engine.trainer import Trainer
from ..inference.tracker import PoseTracker
from ..utils.atomic import atomic_path, atomic_write_json
from ..utils.visualization import TrackVisualizer

__all__ = [
    "OKS_NMS_THRESH",
    "QuickstartTrainer",
    "quickstart_cfg",
    "evaluate_with_oks_nms",
    "render_predictions",
    "run_quickstart",
    "seed_run",
]

OKS_NMS_THRESH = 0.45  # the official experimental head's OKS-NMS


def quickstart_cfg(config_file: str, output: str, eval_period: int = 0, opts: Sequence = ()):
    """The frozen quickstart config: `config_file` + `opts`, on CPU, writing under `output`, evaluating every
    `eval_period` iterations (0: at the end only)."""
    # Tracking on: the evaluation reports MOTA (the streaming tracker's ids) beside AP.
    cfg = load_pavenet_config(
        config_file,
        [
            "OUTPUT_DIR",
            output,
            "MODEL.DEVICE",
            "cpu",
            "TEST.EVAL_PERIOD",
            eval_period,
            "TEST.POSETRACK.EVAL_TRACKING",
            True,
            *opts,
        ],
    )
    cfg.freeze()
    return cfg


def seed_run(cfg):
    """One seed (the config's SEED, 42 for the demo) fixes initialisation, the data order (the training
    sampler reads cfg.SEED) and augmentation (detectron2 seeds each data-loader worker from the torch RNG).
    SEED < 0 draws a fresh one, as detectron2 does."""
    seed_all_rng(cfg.SEED if cfg.SEED >= 0 else None)


class QuickstartTrainer(Trainer):
    """The package Trainer plus a progress bar and a record of (iteration, AP) for the learning curve."""

    def __init__(self, cfg):
        self.curve = []
        super().__init__(cfg)

    def build_hooks(self):
        ret = super().build_hooks()
        ret.insert(0, ProgressBarHook(desc="train tiny PAVE-Net"))
        # Replace the EvalHook's function so that each evaluation is recorded with its iteration.
        for i, h in enumerate(ret):
            if isinstance(h, hooks.EvalHook):
                ret[i] = hooks.EvalHook(self.cfg.TEST.EVAL_PERIOD, self._eval_and_record)
        return ret

    def build_writers(self):
        # detectron2's default writers, but the training events go to train_metrics.json: the job's own
        # metrics.json (the evaluation summary, written at the end) would otherwise replace them.
        writers = super().build_writers()
        for i, w in enumerate(writers):
            if isinstance(w, JSONWriter):
                w.close()
                writers[i] = JSONWriter(os.path.join(self.cfg.OUTPUT_DIR, "train_metrics.json"))
        return writers

    def _eval_and_record(self):
        with self.evaluation_weights():  # the weight average when MODEL.PAVENET.EMA_DECAY > 0
            results = self.test(self.cfg, self.model)
            self.ap_with_oks_nms = evaluate_with_oks_nms(self.cfg, self.model)
        ap = results.get("posetrack", {}).get("AP", float("nan"))
        self.curve.append(
            {
                "iteration": min(self.iter + 1, self.max_iter),
                "ap": ap,
                "ap_with_oks_nms": self.ap_with_oks_nms["total"],
                "ap_without_duplicates": results.get("posetrack", {}).get("AP-without-duplicates"),
                "mota": results.get("posetrack", {}).get("MOTA"),
                "minutes": (time.time() - self._t0) / 60,
            }
        )
        self._last_eval_results = results
        return results

    def train(self):
        self._t0 = time.time()
        return super().train()


def evaluate_with_oks_nms(cfg, model, thresh: float = OKS_NMS_THRESH) -> dict:
    """The paper's protocol is NMS-free (the config's default). Also evaluate `model`'s weights with the
    official experimental head's OKS-NMS (MODEL.PAVENET.TEST.OKS_NMS_THRESH `thresh` on a cloned config),
    which shows how much of the gap is duplicate detections: the metrics' `ap` dict."""
    nms_cfg = cfg.clone()
    nms_cfg.defrost()
    nms_cfg.MODEL.PAVENET.TEST.OKS_NMS_THRESH = thresh
    nms_cfg.freeze()
    # A second model read from the config, with the trained weights. Its random initialisation must not
    # move the training's RNG stream (this runs between iterations): fork the CPU generator around it.
    with torch.random.fork_rng(devices=[]):
        nms_model = build_model(nms_cfg)
    nms_model.load_state_dict(getattr(model, "module", model).state_dict())
    val = cfg.DATASETS.TEST[0]
    nms_dir = os.path.join(cfg.OUTPUT_DIR, "inference_oks_nms", val)
    Trainer.test(nms_cfg, nms_model, evaluators=[Trainer.build_evaluator(nms_cfg, val, nms_dir)])
    with open(os.path.join(nms_dir, "posetrack_metrics.json")) as f:
        return json.load(f)["ap"]


def render_predictions(
    cfg, model, dataset_name: str, out_path: str, max_frames: int, score_thresh: float
):
    """GT (left) and prediction (right, each person labelled with its track id) for the frames of the first
    video of `dataset_name`, as an animated GIF at `out_path` (written atomically); returns (video id, frames drawn)."""
    metadata = MetadataCatalog.get(dataset_name)
    dicts = DatasetCatalog.get(dataset_name)
    video = dicts[0]["video_id"]
    dicts = [d for d in dicts if d["video_id"] == video][:max_frames]
    mapper = PoseTrackClipDatasetMapper(cfg, is_train=False, dataset_name=dataset_name)
    P = cfg.TEST.POSETRACK
    tracker = PoseTracker(
        cfg.MODEL.PAVENET.NUM_FRAMES,
        metadata.get("keypoint_oks_sigmas", None),
        P.TRACK_MATCH_THRESH,
        P.TRACK_PATIENCE,
    )
    overlay = TrackVisualizer(metadata, scale=2.0)
    panels = []
    model.eval()
    with torch.no_grad():
        for d in tqdm(dicts, desc=f"render {video}", unit="frame"):
            inst = model([mapper(d)])[0]["instances"].to("cpu")
            inst = tracker.update_instances(inst[inst.scores >= score_thresh])
            bgr = cv2.imread(d["file_name"])
            rgb = bgr[:, :, ::-1]
            gt = (
                Visualizer(rgb, metadata, scale=2.0)
                .draw_dataset_dict({"annotations": d["annotations"]})
                .get_image()
            )
            pred = overlay.draw(bgr, inst)[:, :, ::-1]
            sep = np.full((gt.shape[0], 6, 3), 255, np.uint8)
            panels.append(Image.fromarray(np.concatenate([gt, sep, pred], axis=1)))
    with atomic_path(out_path) as tmp:
        panels[0].save(tmp, save_all=True, append_images=panels[1:], duration=250, loop=0)
    return video, len(panels)


def _total(metrics: dict, key: str) -> float:
    """A metrics block's total, NaN when it was not evaluated (or is undefined)."""
    total = metrics.get(key, {}).get("total")
    return float("nan") if total is None else total


def run_quickstart(
    config_file: str = "configs/synthetic/pavenet_tiny.yaml",
    output: str = "output/demo",
    eval_period: int = 0,
    render_frames: int = 24,
    render_score_thresh: float = 0.3,
    threads: int = 0,
    opts: Sequence = (),
) -> dict:
    """Train, evaluate and render (see the module docstring); writes model_final.pth, metrics.json,
    predictions.gif and the training log under `output`, prints where, and returns the metrics."""
    os.makedirs(output, exist_ok=True)
    setup_logger(output=output, name="detectron2")
    setup_logger(output=output, name="pavenet")
    if threads:
        torch.set_num_threads(threads)
    root = ensure_synthetic_dataset()
    print(f"synthetic PoseTrack data: {root}")
    cfg = quickstart_cfg(config_file, output, eval_period, opts)
    seed_run(cfg)

    t0 = time.time()
    trainer = QuickstartTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    train_minutes = (time.time() - t0) / 60
    if not trainer.curve or trainer.curve[-1]["iteration"] != cfg.SOLVER.MAX_ITER:
        trainer._eval_and_record()

    val = cfg.DATASETS.TEST[0]
    with open(os.path.join(cfg.OUTPUT_DIR, "inference", val, "posetrack_metrics.json")) as f:
        metrics = json.load(f)
    metrics["ap_with_oks_nms"] = trainer.ap_with_oks_nms
    dup = metrics.get("duplicates", {})
    metrics["learning_curve"] = trainer.curve
    metrics["seed"] = cfg.SEED
    metrics["train_minutes"] = round(train_minutes, 2)
    metrics["iterations"] = cfg.SOLVER.MAX_ITER
    metrics["clips_per_iteration"] = cfg.SOLVER.IMS_PER_BATCH
    atomic_write_json(os.path.join(output, "metrics.json"), metrics)

    gif = os.path.join(output, "predictions.gif")
    with trainer.evaluation_weights():
        video, n = render_predictions(
            cfg, trainer.model, val, gif, render_frames, render_score_thresh
        )
    print(
        f"\nDone in {(time.time() - t0) / 60:.1f} min (training {train_minutes:.1f} min).\n"
        f"  synthetic-val mAP (poseval AP Total): {metrics['ap']['total']:.1f} NMS-free (the paper's protocol), "
        f"{metrics['ap_with_oks_nms']['total']:.1f} with OKS-NMS {OKS_NMS_THRESH}\n"
        f"  duplicates (NMS-free): {dup.get('duplicates')} in the output, {dup.get('steals')} people taken from their "
        f"best-scoring prediction by one; {dup.get('ap_without_duplicates', float('nan')):.1f} AP without them\n"
        f"  tracking (NMS-free): MOTA {_total(metrics, 'mota'):.1f}, MOTP {_total(metrics, 'motp'):.1f}\n"
        f"  metrics:   {os.path.join(output, 'metrics.json')}\n"
        f"  weights:   {os.path.join(output, 'model_final.pth')}\n"
        f"  rendering: {gif} ({n} frames of {video}: ground truth left, prediction right)"
    )
    return metrics
