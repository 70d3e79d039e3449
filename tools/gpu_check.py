#!/usr/bin/env python
"""GPU check of the deformable-attention kernel: on one CUDA device, with the golden case's seeded official
weights, run the model once per backend (pytorch, kernel) and compare the two with each other and with the
official outputs; write the differences as JSON. `scripts/gpu_check.sh` runs this, then the benchmark.

  python tools/gpu_check.py --golden-dir GOLDEN --official-keys KEYS.txt --json out/gpu_check.json

GOLDEN holds `make_weights.py` and `r50_f3_seed2026/{input,outputs}.npz` (the files tests/test_golden.py
reads; see its PAVENET_GOLDEN_DIR / PAVENET_SHARED_DIR); KEYS.txt the official R50 F=3 state-dict keys.
The check itself is `pavenet.apps.gpu_check.check_kernel`.
"""

import argparse
import json
import sys
from pathlib import Path

from pavenet.apps.gpu_check import GpuCheckError, check_kernel
from pavenet.utils.atomic import atomic_write_json


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--golden-dir", required=True, type=Path)
    p.add_argument("--official-keys", required=True, type=Path)
    p.add_argument("--device", default="cuda")
    p.add_argument("--json", required=True)
    args = p.parse_args(argv)
    try:
        res = check_kernel(args.golden_dir, args.official_keys, args.device)
    except (FileNotFoundError, GpuCheckError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    atomic_write_json(args.json, res, indent=2)
    print(json.dumps(res, indent=2))
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
