"""The one reader of PoseTrack JSON files and the structural checks every reader of them shares.

Both the dataset loader (`data.datasets.posetrack`, training and inference items) and the evaluator's
readers (`evaluation.readers`, GT and prediction files) read PoseTrack files through `load_json` and check
their top-level fields with `check_posetrack18_lists` / `check_entries`, so a file is refused the same way
whichever entry point reads it. Every error is a `PoseTrackFormatError` (a ValueError) naming the file.
"""
import json
import math
from typing import List, Optional

__all__ = ["PoseTrackFormatError", "load_json", "check_posetrack18_lists", "check_entries", "finite_numbers",
           "is_entry_id"]


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
        raise PoseTrackFormatError(f"{path}: expected a JSON object with 'images' and 'annotations', "
                                   f"got {type(data).__name__}")
    for field in ("images", "annotations"):
        if not isinstance(data.get(field), list):
            what = "is missing" if field not in data else f"is a {type(data[field]).__name__}"
            raise PoseTrackFormatError(
                f"{path}: expected PoseTrack18 'images' and 'annotations' lists (got fields {sorted(data)}): field "
                f"'{field}' {what} (a sequence without people has \"annotations\": [])")
        check_entries(data[field], path, field)


def check_entries(entries, path: str, field: str) -> None:
    """`entries` (the file's field `field`) is a list of JSON objects."""
    if not isinstance(entries, list):
        raise PoseTrackFormatError(f"{path}: field '{field}' must be a list, got {type(entries).__name__}")
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            raise PoseTrackFormatError(f"{path}: {field}[{i}] must be an object, got {type(e).__name__}")


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
