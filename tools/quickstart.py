#!/usr/bin/env python
"""The main job (`make demo`): train the tiny PAVE-Net on the embedded synthetic PoseTrack videos on CPU,
evaluate it with the PoseTrack metrics, and render its predictions beside the ground truth.

No download: the synthetic dataset is generated on first use. Outputs (under --output, default
output/demo): model_final.pth, metrics.json (the evaluator CLI's schema plus the learning curve),
predictions.gif (GT | prediction for the frames of one val video), and the training log.
The job lives in `pavenet.apps.quickstart` (`run_quickstart`); this script parses the arguments.
"""

import argparse

from pavenet.apps.quickstart import run_quickstart
from pavenet.config import ConfigError


def get_parser():
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config-file", default="configs/synthetic/pavenet_tiny.yaml")
    p.add_argument("--output", default="output/demo")
    p.add_argument(
        "--eval-period",
        type=int,
        default=0,
        help="iterations between learning-curve evaluations (0: end only)",
    )
    p.add_argument(
        "--render-frames", type=int, default=24, help="frames of one val video in predictions.gif"
    )
    p.add_argument(
        "--render-score-thresh", type=float, default=0.3, help="persons drawn in predictions.gif"
    )
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all cores)")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, KEY VALUE ...")
    return p


def main(argv=None) -> dict:
    args = get_parser().parse_args(argv)
    return run_quickstart(
        args.config_file,
        args.output,
        eval_period=args.eval_period,
        render_frames=args.render_frames,
        render_score_thresh=args.render_score_thresh,
        threads=args.threads,
        opts=args.opts,
    )


if __name__ == "__main__":
    try:
        main()
    except ConfigError as e:  # a bad --config-file / override: one line naming it, no traceback
        raise SystemExit(f"error: {e}")
