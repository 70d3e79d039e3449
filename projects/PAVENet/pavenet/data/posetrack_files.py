"""The one reader of PoseTrack JSON files and the structural checks every reader of them shares.

Both the dataset loader (`data.datasets.posetrack`, training and inference items) and the evaluator's
readers (`evaluation.readers`, GT and prediction files) read PoseTrack files through `load_json`, check
their top-level fields and ids with `check_posetrack18_lists` and their numbers with `finite_numbers`, so a
file is refused the same way whichever entry point reads it. Every error is a `PoseTrackFormatError` (a
ValueError) naming the file.
"""

import json
import math
from typing import List, Optional

__all__ = [
    "PoseTrackFormatError",
    "load_json",
    "check_posetrack18_lists",
    "check_entries",
    "check_image_ids",
    "finite_numbers",
    "is_entry_id",
]


class PoseTrackFormatError(ValueError):
    """Bad GT, prediction or dataset input; the message names the offending file."""


def load_json(path: str):
    """json.load naming the file when it is unreadable, malformed or truncated."""
    try:
        with open(path, "r") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PoseTrackFormatError(f"{path}: malformed JSON, truncated or not JSON ({e})") from None
    except RecursionError:  # deeply nested brackets: json gives up with a RecursionError
        raise PoseTrackFormatError(f"{path}: malformed JSON (nested too deeply)") from None
    except OSError as e:
        raise PoseTrackFormatError(f"{path}: cannot read ({e})") from e


def check_posetrack18_lists(data, path: str) -> None:
    """A PoseTrack 2018/21 (or COCO-style) file is a JSON object with `images` and `annotations` lists of
    objects; a sequence without people has "annotations": [] (a missing field is an error, not "nobody")."""
    if not isinstance(data, dict):
        raise PoseTrackFormatError(
            f"{path}: expected a JSON object with 'images' and 'annotations', "
            f"got {type(data).__name__}"
        )
    for field in ("images", "annotations"):
        if not isinstance(data.get(field), list):
            what = "is missing" if field not in data else f"is a {type(data[field]).__name__}"
            raise PoseTrackFormatError(
                f"{path}: expected PoseTrack18 'images' and 'annotations' lists (got fields {sorted(data)}): field "
                f"'{field}' {what} (a sequence without people has \"annotations\": [])"
            )
        check_entries(data[field], path, field)
    check_image_ids(data["images"], data["annotations"], path)


def check_image_ids(images, annotations, path: str) -> None:
    """Image ids are unique and every annotation's `image_id` names an image of the file: an annotation
    that names none would silently drop a person, a repeated id would give one person to two frames."""
    seen = set()
    for i, im in enumerate(images):
        if "id" not in im:
            raise PoseTrackFormatError(f"{path}: images[{i}] has no field 'id'")
        if not is_entry_id(im["id"]):
            raise PoseTrackFormatError(
                f"{path}: images[{i}]: field 'id' = {im['id']!r}, expected an integer or a string"
            )
        if im["id"] in seen:
            raise PoseTrackFormatError(
                f"{path}: images[{i}]: id {im['id']!r} is used by an earlier image too"
            )
        seen.add(im["id"])
    for i, ann in enumerate(annotations):
        if "image_id" not in ann:
            raise PoseTrackFormatError(f"{path}: annotations[{i}] has no field 'image_id'")
        if not is_entry_id(ann["image_id"]) or ann["image_id"] not in seen:
            raise PoseTrackFormatError(
                f"{path}: annotations[{i}]: field 'image_id' = {ann['image_id']!r} names no "
                "image of the file (field 'images')"
            )


def check_entries(entries, path: str, field: str) -> None:
    """`entries` (the file's field `field`) is a list of JSON objects."""
    if not isinstance(entries, list):
        raise PoseTrackFormatError(
            f"{path}: field '{field}' must be a list, got {type(entries).__name__}"
        )
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            raise PoseTrackFormatError(
                f"{path}: {field}[{i}] must be an object, got {type(e).__name__}"
            )


def is_entry_id(v) -> bool:
    """An image / annotation id: an integer (not a bool) or a string."""
    return isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool))


def finite_numbers(values, where: str, field: Optional[str] = None) -> List[float]:
    """floats of a JSON list found at `where` (the file and entry; `field`: the field, when `where` does not
    name it); a non-number (bools included) or NaN / inf (which JSON readers accept) is an error: NaN
    poisons every loss and ranking it reaches."""
    in_field = f" in field '{field}'" if field else ""
    if not isinstance(values, (list, tuple)):
        raise PoseTrackFormatError(f"{where}: expected a list of numbers{in_field}, got {values!r}")
    if any(isinstance(c, bool) or not isinstance(c, (int, float)) for c in values):
        raise PoseTrackFormatError(f"{where}: expected numbers{in_field}, got {list(values)!r}")
    out = [float(c) for c in values]
    if not all(math.isfinite(c) for c in out):
        raise PoseTrackFormatError(f"{where}: non-finite value{in_field} ({out})")
    return out
