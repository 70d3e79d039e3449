"""Seeded mutations of the shared PoseTrack18 sample files (ground truth) and of prediction files made from
them go through the dataset loader and the evaluator. Every outcome must be the reference reading (the
mutation touched something the reader ignores) or a PoseTrackFormatError naming the mutated file: never
another exception, never a silently different result.

Mutations: a field dropped, a value retyped (a string, null, a list, an object, a bool or a number in place
of another kind), NaN / inf in place of a number, a number list one longer or shorter, the JSON text cut
short, an image id renumbered consistently (same result) or on one side only (refused). Fields whose absence
means something by design (e.g. no `bbox`: the joints' extent; no `scores`: poseval's fallback) are not
dropped or nulled. Bounded (derandomized, a fixed number of examples) to keep CI fast.
"""

import copy
import json
import math
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pavenet.data.datasets.posetrack import load_posetrack_video_dicts
from pavenet.data.posetrack_files import PoseTrackFormatError
from pavenet.evaluation.poseval import evaluate_dirs

from conftest import SAMPLE_DIR

# Absent or null on purpose in valid files: dropping them changes the reading legitimately.
OPTIONAL = {
    "bbox",
    "bbox_head",
    "track_id",
    "scores",
    "is_labeled",
    "height",
    "width",
    "nframes",
    "iscrowd",
    "area",
}
RETYPED = ["x", None, [], {}, True, 7]
NON_FINITE = [math.nan, math.inf, -math.inf]
OPS = ["drop", "nonfinite", "lengthen", "truncate", "renumber", "renumber_one_side"] + [
    ("retype", i) for i in range(len(RETYPED))
]
FUZZ = settings(
    max_examples=120,
    deadline=5000,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _kind(v):
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    return {str: "str", type(None): "null", list: "list", dict: "dict"}[type(v)]


def _paths(node, prefix=()):
    """Every field and element of a JSON tree; of a list only the first and last elements (polygons hold
    hundreds of coordinates)."""
    if prefix:
        yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list) and node:
        for i in sorted({0, len(node) - 1}):
            yield from _paths(node[i], prefix + (i,))


def _get(node, path):
    for p in path:
        node = node[p]
    return node


def _mutate(data, path, op, cut):
    """The mutated JSON text, or None where `op` does not apply at `path`."""
    d = copy.deepcopy(data)
    parent, key = _get(d, path[:-1]), path[-1]
    value = parent[key]
    name = next((p for p in reversed(path) if isinstance(p, str)), "")
    if op == "truncate":
        text = json.dumps(d)
        return text[: cut % len(text)]
    if op in ("renumber", "renumber_one_side"):
        old = d["images"][0]["id"]
        d["images"][0]["id"] = old + 1_000_003
        if op == "renumber":
            for ann in d["annotations"]:
                if ann["image_id"] == old:
                    ann["image_id"] = old + 1_000_003
        return json.dumps(d)
    if op == "drop":
        if isinstance(parent, dict):
            if key in OPTIONAL:
                return None
            del parent[key]
        elif all(
            _kind(v) in ("number", "str", "list") for v in parent
        ):  # a number / name / polygon list
            del parent[key]
        else:  # dropping a whole image or person gives another valid file
            return None
    elif op == "nonfinite":
        if _kind(value) != "number":
            return None
        parent[key] = NON_FINITE[cut % 3]
    elif op == "lengthen":
        if _kind(value) != "list" or not value or not all(_kind(v) == "number" for v in value):
            return None
        value.append(value[-1])
    else:
        new = RETYPED[op[1]]
        if _kind(new) == _kind(value) or (new is None and name in OPTIONAL and key == name):
            return None
        parent[key] = new
    return json.dumps(d)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The sample's val GT, predictions made from it (scores per joint), and their reference readings."""
    if not SAMPLE_DIR.is_dir():
        pytest.skip(
            f"real PoseTrack18 sample not found at {SAMPLE_DIR} (set PAVENET_POSETRACK18_SAMPLE)"
        )
    sample_dir = SAMPLE_DIR
    root = tmp_path_factory.mktemp("fuzz")
    gt_dir, pred_dir = root / "gt", root / "pred"
    shutil.copytree(sample_dir / "annotations" / "val", gt_dir)
    pred_dir.mkdir()
    files = sorted(p.name for p in gt_dir.glob("*.json"))
    gt = {f: json.loads((gt_dir / f).read_text()) for f in files}
    preds = {}
    for f, data in gt.items():
        pred = copy.deepcopy(data)
        for k, ann in enumerate(pred["annotations"]):
            ann["scores"] = [
                round(0.9 - 0.01 * (j + k), 3) for j in range(len(ann["keypoints"]) // 3)
            ]
        preds[f] = pred
        (pred_dir / f).write_text(json.dumps(pred))
    return dict(
        root=root,
        files=files,
        gt=gt,
        preds=preds,
        sample_dir=sample_dir,
        loaded=load_posetrack_video_dicts(str(gt_dir), str(sample_dir)),
        metrics=_metrics(gt_dir, pred_dir),
    )


def _metrics(gt_dir, pred_dir) -> str:
    return json.dumps(
        evaluate_dirs(str(gt_dir), str(pred_dir)).to_json(), sort_keys=True
    )  # NaN == NaN here


def _without_image_ids(dicts):
    return [{k: v for k, v in d.items() if k != "image_id"} for d in dicts]


def _draw_case(ref, draw, which):
    """Draw a file of `which` ("gt" / "pred") and a mutation of it; write the reference GT and predictions
    with that file mutated. Returns (what was done, gt dir, pred dir, mutated file), or None where the
    drawn mutation does not apply."""
    name = draw(st.sampled_from(ref["files"]))
    data = ref["gt" if which == "gt" else "preds"][name]
    path = draw(st.sampled_from(sorted(set(_paths(data)), key=str)))
    op = draw(st.sampled_from(OPS))
    text = _mutate(data, path, op, draw(st.integers(0, 10**6)))
    if text is None:
        return None
    case = ref["root"] / "case"
    shutil.rmtree(case, ignore_errors=True)
    for kind, src in (("gt", ref["gt"]), ("pred", ref["preds"])):
        (case / kind).mkdir(parents=True)
        for f, content in src.items():
            (case / kind / f).write_text(
                text if (kind, f) == (which, name) else json.dumps(content)
            )
    return (op, path), case / "gt", case / "pred", case / which / name


def _check(what, read, equal, mutated):
    """`read()` gives a result `equal` accepts, or a PoseTrackFormatError naming `mutated`."""
    try:
        got = read()
    except PoseTrackFormatError as e:
        assert str(mutated) in str(e), f"{what}: the error does not name the file: {e}"
        return
    assert equal(got), f"{what}: silently read a different result"


@FUZZ
@given(st.data())
def test_mutated_gt_files_give_the_reference_or_an_error_naming_the_file(reference, data):
    case = _draw_case(reference, data.draw, "gt")
    if case is None:
        return
    (op, path), gt_dir, pred_dir, mutated = case
    if op == "renumber":  # the ids change, nothing else
        same = lambda got: _without_image_ids(got) == _without_image_ids(reference["loaded"])  # noqa: E731
    else:
        same = lambda got: got == reference["loaded"]  # noqa: E731
    _check(
        f"loader, {op} at {path}",
        lambda: load_posetrack_video_dicts(str(gt_dir), str(reference["sample_dir"])),
        same,
        mutated,
    )
    _check(
        f"evaluator, {op} at {path}",
        lambda: _metrics(gt_dir, pred_dir),
        lambda got: got == reference["metrics"],
        mutated,
    )


@FUZZ
@given(st.data())
def test_mutated_prediction_files_give_the_reference_or_an_error_naming_the_file(reference, data):
    case = _draw_case(reference, data.draw, "pred")
    if case is None:
        return
    (op, path), gt_dir, pred_dir, mutated = case
    _check(
        f"evaluator, {op} at {path}",
        lambda: _metrics(gt_dir, pred_dir),
        lambda got: got == reference["metrics"],
        mutated,
    )
