#!/usr/bin/env python
"""The main job (`make demo`): train the tiny PAVE-Net on the embedded synthetic PoseTrack videos on CPU,
evaluate it with the PoseTrack metrics, and render its predictions beside the ground truth.

No download: the synthetic dataset is generated on first use. Outputs (under --output, default
output/demo): model_final.pth, metrics.json (the evaluator CLI's schema plus the learning curve),
predictions.gif (GT | prediction for the frames of one val video), and the training log.
"""
import argparse
import json
import os
import time

import cv2
import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import hooks
from detectron2.utils.env import seed_all_rng
from detectron2.utils.logger import setup_logger
from detectron2.utils.visualizer import Visualizer
from PIL import Image
from tqdm import tqdm

from pavenet.config import ConfigError, load_pavenet_config
from pavenet.data.dataset_mapper import PoseTrackClipDatasetMapper
from pavenet.data.synthetic import ensure_synthetic_dataset
from pavenet.engine import Trainer
from pavenet.engine.hooks import ProgressBarHook
from pavenet.utils.atomic import atomic_path, atomic_write_json


OKS_NMS_THRESH = 0.45


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", default="configs/synthetic/pavenet_tiny.yaml")
    p.add_argument("--output", default="output/demo")
    p.add_argument("--eval-period", type=int, default=0, help="iterations between learning-curve evaluations (0: end only)")
    p.add_argument("--render-frames", type=int, default=24, help="frames of one val video in predictions.gif")
    p.add_argument("--render-score-thresh", type=float, default=0.3, help="persons drawn in predictions.gif")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all cores)")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, KEY VALUE ...")
    return p.parse_args()


def build_cfg(args):
    cfg = load_pavenet_config(args.config_file, ["OUTPUT_DIR", args.output, "MODEL.DEVICE", "cpu",
                                                 "TEST.EVAL_PERIOD", args.eval_period, *args.opts])
    cfg.freeze()
    return cfg


def seed_run(cfg):
    """One seed (the config's SEED, 42 for the demo) fixes initialisation, the data order (the training
    sampler reads cfg.SEED) and augmentation (detectron2 seeds each data-loader worker from the torch RNG).
    SEED < 0 draws a fresh one, as detectron2 does."""
    seed_all_rng(cfg.SEED if cfg.SEED >= 0 else None)


class DemoTrainer(Trainer):
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

    def _eval_and_record(self):
        results = self.test(self.cfg, self.model)
        ap = results.get("posetrack", {}).get("AP", float("nan"))
        self.ap_with_oks_nms = evaluate_with_oks_nms(self.cfg, self.model)
        self.curve.append({"iteration": min(self.iter + 1, self.max_iter), "ap": ap,
                           "ap_with_oks_nms": self.ap_with_oks_nms["total"], "minutes": (time.time() - self._t0) / 60})
        self._last_eval_results = results
        return results

    def train(self):
        self._t0 = time.time()
        return super().train()


def evaluate_with_oks_nms(cfg, model):
    """The paper's protocol is NMS-free (the config's default). Also evaluate with the official experimental
    head's OKS-NMS (0.45), which shows how much of the gap is duplicate detections: its `ap` dict."""
    val = cfg.DATASETS.TEST[0]
    model = getattr(model, "module", model)
    model.oks_nms_thresh, nms_free = OKS_NMS_THRESH, model.oks_nms_thresh
    nms_dir = os.path.join(cfg.OUTPUT_DIR, "inference_oks_nms", val)
    try:
        Trainer.test(cfg, model, evaluators=[Trainer.build_evaluator(cfg, val, nms_dir)])
    finally:
        model.oks_nms_thresh = nms_free
    with open(os.path.join(nms_dir, "posetrack_metrics.json")) as f:
        return json.load(f)["ap"]


def render_predictions(cfg, model, dataset_name, out_path, max_frames, score_thresh):
    """GT (left) and prediction (right) for the frames of the first val video, as an animated GIF."""
    metadata = MetadataCatalog.get(dataset_name)
    dicts = DatasetCatalog.get(dataset_name)
    video = dicts[0]["video_id"]
    dicts = [d for d in dicts if d["video_id"] == video][:max_frames]
    mapper = PoseTrackClipDatasetMapper(cfg, is_train=False, dataset_name=dataset_name)
    panels = []
    model.eval()
    with torch.no_grad():
        for d in tqdm(dicts, desc=f"render {video}", unit="frame"):
            inst = model([mapper(d)])[0]["instances"].to("cpu")
            inst = inst[inst.scores >= score_thresh]
            rgb = cv2.imread(d["file_name"])[:, :, ::-1]
            gt = Visualizer(rgb, metadata, scale=2.0).draw_dataset_dict({"annotations": d["annotations"]}).get_image()
            pred = Visualizer(rgb, metadata, scale=2.0).draw_instance_predictions(inst).get_image()
            sep = np.full((gt.shape[0], 6, 3), 255, np.uint8)
            panels.append(Image.fromarray(np.concatenate([gt, sep, pred], axis=1)))
    with atomic_path(out_path) as tmp:
        panels[0].save(tmp, save_all=True, append_images=panels[1:], duration=250, loop=0)
    return video, len(panels)


def main():
    args = parse_args()
    os.makedirs(args.output, exist_ok=True)
    setup_logger(output=args.output, name="detectron2")
    setup_logger(output=args.output, name="pavenet")
    if args.threads:
        torch.set_num_threads(args.threads)
    root = ensure_synthetic_dataset()
    print(f"synthetic PoseTrack data: {root}")
    cfg = build_cfg(args)
    seed_run(cfg)

    t0 = time.time()
    trainer = DemoTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    train_minutes = (time.time() - t0) / 60
    if not trainer.curve or trainer.curve[-1]["iteration"] != cfg.SOLVER.MAX_ITER:
        trainer._eval_and_record()

    val = cfg.DATASETS.TEST[0]
    eval_json = os.path.join(cfg.OUTPUT_DIR, "inference", val, "posetrack_metrics.json")
    with open(eval_json) as f:
        metrics = json.load(f)
    metrics["ap_with_oks_nms"] = trainer.ap_with_oks_nms
    metrics["learning_curve"] = trainer.curve
    metrics["seed"] = cfg.SEED
    metrics["train_minutes"] = round(train_minutes, 2)
    metrics["iterations"] = cfg.SOLVER.MAX_ITER
    metrics["clips_per_iteration"] = cfg.SOLVER.IMS_PER_BATCH
    atomic_write_json(os.path.join(args.output, "metrics.json"), metrics)

    gif = os.path.join(args.output, "predictions.gif")
    video, n = render_predictions(cfg, trainer.model, val, gif, args.render_frames, args.render_score_thresh)
    print(
        f"\nDone in {(time.time() - t0) / 60:.1f} min (training {train_minutes:.1f} min).\n"
        f"  synthetic-val mAP (poseval AP Total): {metrics['ap']['total']:.1f} NMS-free (the paper's protocol), "
        f"{metrics['ap_with_oks_nms']['total']:.1f} with OKS-NMS {OKS_NMS_THRESH}\n"
        f"  metrics:   {os.path.join(args.output, 'metrics.json')}\n"
        f"  weights:   {os.path.join(args.output, 'model_final.pth')}\n"
        f"  rendering: {gif} ({n} frames of {video}: ground truth left, prediction right)"
    )


if __name__ == "__main__":
    try:
        main()
    except ConfigError as e:  # a bad --config-file / override: one line naming it, no traceback
        raise SystemExit(f"error: {e}")
