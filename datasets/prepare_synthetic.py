#!/usr/bin/env python
"""Write the synthetic PoseTrack 2018-format dataset (deterministic; no download).

python datasets/prepare_synthetic.py                     # -> $DETECTRON2_DATASETS/posetrack_synthetic
python datasets/prepare_synthetic.py --root /tmp/syn --num-train 4 --num-val 1 --force
"""

import argparse
import os
import shutil
import sys
import time

sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "projects", "PAVENet")
)

from pavenet.data.synthetic import DEFAULT_PARAMS, ensure_synthetic_dataset  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    default_root = os.path.join(
        os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets")), "posetrack_synthetic"
    )
    p.add_argument("--root", default=default_root, help="output folder (default: %(default)s)")
    p.add_argument("--num-train", type=int, default=DEFAULT_PARAMS["num_train"])
    p.add_argument("--num-val", type=int, default=DEFAULT_PARAMS["num_val"])
    p.add_argument(
        "--frames", type=int, default=DEFAULT_PARAMS["num_frames"], help="frames per video"
    )
    p.add_argument("--width", type=int, default=DEFAULT_PARAMS["width"])
    p.add_argument("--height", type=int, default=DEFAULT_PARAMS["height"])
    p.add_argument("--seed", type=int, default=DEFAULT_PARAMS["seed"])
    p.add_argument("--force", action="store_true", help="delete and regenerate an existing dataset")
    a = p.parse_args(argv)
    if a.force and os.path.isdir(a.root):
        shutil.rmtree(a.root)
    t0 = time.time()
    root = ensure_synthetic_dataset(
        a.root,
        num_train=a.num_train,
        num_val=a.num_val,
        num_frames=a.frames,
        width=a.width,
        height=a.height,
        seed=a.seed,
    )
    print(f"synthetic PoseTrack dataset ready at {root} ({time.time() - t0:.1f} s)")


if __name__ == "__main__":
    main()
