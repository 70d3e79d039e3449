"""Average precision per joint (docs/POSETRACK_METRICS.md §4.5), as poseval's `evaluateAP` computes it.

It owns the ranking and the VOC all-point AP: every predicted joint of every evaluated frame is one
(score, hit) pair, pooled over all frames and videos per joint; AP is the area under the
monotone-precision / recall curve, in percent, with poseval's conventions for the empty cases (no
predictions -> 0, no GT -> NaN). Which joint is a hit is decided by `matching.py`.
"""

from typing import List, Tuple

import numpy as np

__all__ = ["voc_ap", "pooled_joint_ap"]


def voc_ap(scores: np.ndarray, labels: np.ndarray, n_gt: float) -> Tuple[float, float, float]:
    """VOC all-point AP (percent), last precision and recall (percent). No predictions -> 0; no GT -> NaN."""
    if scores.size == 0:
        return 0.0, 0.0, 0.0
    order = np.argsort(scores)[
        ::-1
    ]  # poseval's descending sort (numpy's default, unstable on ties)
    tp = np.cumsum(labels[order].astype(np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        rec = tp / n_gt
    prec = tp / np.arange(1, tp.size + 1)
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.concatenate([[0.0], prec, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    idx = np.nonzero(mrec[1:] != mrec[:-1])[0] + 1
    ap = float(np.sum((mrec[idx] - mrec[idx - 1]) * mpre[idx]))
    return 100.0 * ap, 100.0 * float(prec[-1]), 100.0 * float(rec[-1])


def pooled_joint_ap(
    scores: List[np.ndarray],
    labels: List[np.ndarray],
    predicted: List[np.ndarray],
    n_gt: np.ndarray,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AP, precision and recall (K,) per joint, pooled over frames.

    scores / labels / predicted: one (P, K) array per evaluated frame (joint scores, hit or not, joint
    predicted at all); n_gt: (K,) GT joints per joint over all frames. Only predicted joints are ranked."""
    k = n_gt.shape[0]
    ap, pre, rec = np.zeros(k), np.zeros(k), np.zeros(k)
    if scores:
        scores_all = np.concatenate(scores)
        labels_all = np.concatenate(labels)
        has = np.concatenate(predicted)
        for j in range(k):
            sel = has[:, j]
            ap[j], pre[j], rec[j] = voc_ap(scores_all[sel, j], labels_all[sel, j], n_gt[j])
    return ap, pre, rec
