"""Command line: poseval's AP (and MOTA) over a GT directory and a prediction directory.

    python -m pavenet.evaluation.posetrack --gt-dir GT --pred-dir PRED [--no-track] [--duplicates] [--json OUT]

GT: a directory of per-sequence PoseTrack 2017 / 2018 / 21 JSONs (or one COCO-style JSON). PRED: one file
per GT file, same name, 2017 or 2018 format. Prints the table (Head, Shoulder, ..., Ankle, Mean) and, with
--json, writes {"ap": {"per_joint", "groups", "total"}, "mota": {...}} in percent (no "mota" with --no-track).
--duplicates also reports what duplicate detections cost under poseval's score-free person assignment (their
count, the people they take from the best-scoring prediction, the AP without them; `duplicates.py`) and adds it
to the JSON as "duplicates".
"""

import argparse
import logging
import sys
import time
from typing import List, Optional

from .duplicates import duplicate_report
from .poseval import PoseTrackFormatError, check_track_ids, evaluate, format_table, read_dirs
from .writer import atomic_write_json


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pavenet.evaluation.posetrack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--gt-dir",
        required=True,
        help="GT directory of per-sequence JSONs (or one COCO-style JSON)",
    )
    p.add_argument(
        "--pred-dir", required=True, help="directory of prediction JSONs named like the GT files"
    )
    p.add_argument("--no-track", action="store_true", help="AP only (skip MOTA)")
    p.add_argument(
        "--duplicates",
        action="store_true",
        help="also report duplicate detections and the AP without them (NMS-free models)",
    )
    p.add_argument("--json", default=None, help="write the metrics to this JSON file")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    start = time.perf_counter()
    try:
        gt_seqs, preds, paths = read_dirs(args.gt_dir, args.pred_dir)
        if not args.no_track:
            check_track_ids(gt_seqs, preds, paths)
        results = evaluate(gt_seqs, preds, eval_track=not args.no_track)
    except PoseTrackFormatError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"{results.num_sequences} sequences, {results.num_frames} evaluated frames "
        f"({time.perf_counter() - start:.2f} s)"
    )
    print(format_table(results))
    metrics = results.to_json()
    if args.duplicates:
        report = duplicate_report(gt_seqs, preds, ap=metrics["ap"]["total"])
        print("duplicates: " + report.summary())
        metrics["duplicates"] = report.to_json()
    if args.json:
        try:
            atomic_write_json(args.json, metrics, indent=2)
        except OSError as e:  # e.g. a file where the folder should be, no permission, disk full
            print(f"error: --json {args.json}: cannot write it ({e})", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
