"""Where an NMS-free model's AP goes: duplicate detections under poseval's score-free person assignment.

poseval gives each GT person the prediction with the most correct joints (PCKh), whatever the scores
(`matching.assign_people`). A second, lower-scoring copy of a person is therefore not harmless, as it is
under COCO's score-ordered matching: its joints are false positives, and where the copy happens to have
more correct joints than the best-scoring prediction it takes the person, so the best-scoring prediction's
joints become false positives near the top of the ranking. This module measures that on evaluated frames
(after poseval's own preparation: persons without points and ignore regions removed):

* a prediction *is on* GT person g when g is its best GT by PCKh and it hits at least half of g's annotated
  joints; per person the highest-scoring prediction on it is the *match*, every other one a *duplicate*;
* `ranking`: duplicates that score above the match of another person in the same frame;
* `steals`: GT persons that poseval assigns to one of their duplicates instead of their match;
* `ap_without_duplicates`: poseval's AP Total with the duplicates removed and nothing else changed (the same
  poses and scores), i.e. what a duplicate-free output of the same model would get. The gap to the real AP
  is what the duplicates cost; an OKS-NMS removes most of them, an NMS-free model must not output them.

A prediction's person score here is the mean of its predicted joints' scores (the files carry joint scores;
poseval reads no person score), which keeps the model's order since every joint score is person score x
joint confidence.
"""

from dataclasses import asdict, dataclass
from typing import List, Optional, Sequence

import numpy as np

from .matching import DIST_THRESH, assign_people, pckh_distances, prepare_frame
from .poses import GTSequence, Poses
from .poseval import evaluate

__all__ = ["MIN_PCKH_ON_PERSON", "DuplicateReport", "duplicate_report", "find_duplicates"]

MIN_PCKH_ON_PERSON = (
    0.5  # a prediction counts as "on" a GT person when it hits at least half its joints
)


@dataclass
class DuplicateReport:
    """Counts over all evaluated frames, and AP Total (percent) as is and without the duplicates."""

    frames: int
    gt_people: int
    predictions: int
    duplicates: int
    ranking: int
    steals: int
    ap: float
    ap_without_duplicates: float

    def to_json(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"{self.duplicates} duplicates among {self.predictions} predictions on {self.frames} frames "
            f"({self.gt_people} GT people); {self.steals} people taken by a duplicate instead of their "
            f"best-scoring prediction, {self.ranking} duplicates outscoring another person's match; "
            f"AP {self.ap:.1f}, {self.ap_without_duplicates:.1f} without the duplicates"
        )


def _person_scores(pred: Poses) -> np.ndarray:
    """(P,) mean score of each prediction's predicted joints."""
    n = np.maximum(pred.present.sum(axis=1), 1)
    return np.where(pred.present, pred.scores, 0.0).sum(axis=1) / n


def find_duplicates(gt: Poses, pred: Poses):
    """One prepared frame -> (is_duplicate (P,) bool, steals, ranking) as defined in the module docstring."""
    n_pred, n_gt = len(pred), len(gt)
    is_dup = np.zeros(n_pred, dtype=bool)
    if n_pred == 0 or n_gt == 0:
        return is_dup, 0, 0
    match = pckh_distances(gt, pred) <= DIST_THRESH  # (P, G, 15)
    n_ann = np.maximum(gt.present.sum(axis=1), 1)
    pck = match.sum(axis=2) / n_ann[None, :]  # (P, G)
    best_gt, best_pck = pck.argmax(axis=1), pck.max(axis=1)
    score = _person_scores(pred)
    match_of = {}
    for g in range(n_gt):
        on = np.nonzero((best_gt == g) & (best_pck >= MIN_PCKH_ON_PERSON))[0]
        if on.size == 0:
            continue
        top = on[np.argmax(score[on])]  # first index on ties, as poseval's file order
        match_of[g] = top
        is_dup[on[on != top]] = True
    assigned = assign_people(match, gt.present)
    steals = sum(int(assigned[m] != g and is_dup[assigned == g].any()) for g, m in match_of.items())
    ranking = 0
    for d in np.nonzero(is_dup)[0]:
        others = [score[m] for g, m in match_of.items() if g != best_gt[d]]
        ranking += int(any(score[d] > s for s in others))
    return is_dup, steals, ranking


def duplicate_report(
    gt_seqs: Sequence[GTSequence],
    predictions: Sequence[Sequence[Poses]],
    ap: Optional[float] = None,
) -> DuplicateReport:
    """The report for `predictions[s][i]` (people predicted in frame i of GT sequence s), as `evaluate`.
    `ap`: the AP Total the caller already has for these predictions (else it is evaluated here)."""
    dedup: List[List[Poses]] = []
    frames = gt_people = n_pred = n_dup = steals = ranking = 0
    for seq, pred_frames in zip(gt_seqs, predictions):
        kept = list(pred_frames)
        for i, (gt_frame, pred_frame) in enumerate(zip(seq.frames, pred_frames)):
            if len(gt_frame) == 0:  # not an evaluated frame
                continue
            gt, pred = prepare_frame(gt_frame, pred_frame, seq.ignore[i])
            is_dup, s, r = find_duplicates(gt, pred)
            frames += 1
            gt_people += len(gt)
            n_pred += len(pred)
            n_dup += int(is_dup.sum())
            steals += s
            ranking += r
            kept[i] = pred.take(
                ~is_dup
            )  # already prepared: the pipeline's preparation leaves it unchanged
        dedup.append(kept)
    if ap is None:
        ap = evaluate(gt_seqs, predictions, eval_track=False).to_json()["ap"]["total"]
    ap_dedup = evaluate(gt_seqs, dedup, eval_track=False).to_json()["ap"]["total"]
    return DuplicateReport(
        frames=frames,
        gt_people=gt_people,
        predictions=n_pred,
        duplicates=n_dup,
        ranking=ranking,
        steals=steals,
        ap=float(ap or 0.0),
        ap_without_duplicates=float(ap_dedup or 0.0),
    )
