#!/usr/bin/env python
"""Convert official PAVE-Net / PETR (mmdetection) checkpoints for MODEL.WEIGHTS.

    python tools/convert_official_ckpt.py --src pavenet_r50.pth --dst pavenet_r50_d2.pth
    python tools/convert_official_ckpt.py --src petr_r50.pth --dst init.pth --arch petr --coco-to-posetrack

See `python tools/convert_official_ckpt.py -h` and docs/MODEL_ZOO.md.
"""

import sys

from pavenet.apps.convert_official import main

if __name__ == "__main__":
    sys.exit(main())
