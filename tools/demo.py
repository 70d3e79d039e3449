#!/usr/bin/env python
"""PAVE-Net video demo: overlays with a colour per track id, PoseTrack18 JSON with track ids, COCO results.

  python tools/demo.py --config-file configs/posetrack18/pavenet_r50_3f_pt18.yaml \
      --video-input my.mp4 --output out/ --save-json out/ --opts MODEL.WEIGHTS model.pth
  python tools/demo.py --config-file CFG --input 'frames/*.jpg' --output out.mp4
  python tools/demo.py --config-file CFG --webcam
  python tools/demo.py --config-file CFG --video-input my.mp4 --save-json out/ \
      --backend onnxruntime --onnx-dir exported/     # graphs of tools/deploy/export_model.py

Every output is written under a temporary name and renamed when complete.
"""

import sys

from pavenet.apps.demo.cli import get_parser, main  # noqa: F401  (get_parser: the options, for tests and docs)

if __name__ == "__main__":
    try:
        main()
    except (
        OSError,
        ValueError,
    ) as e:  # bad input or output: a clear one-line error naming the file, no traceback
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
