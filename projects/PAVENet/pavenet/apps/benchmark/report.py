"""The benchmark's result dict: timings folded in per backend (wall, process CPU and user CPU keys), the
model's own backend copied to the top-level keys, the ratios between backends and modes, and the JSON
report (printed and written atomically)."""

import json
from typing import Dict, Optional, Tuple

__all__ = ["add_core_points", "add_timings", "add_ratios", "write_report"]

_INFERENCE_KEYS = ("stream_ms_per_frame", "encode_ms_per_frame", "decode_ms_per_window")


def _clock_keys(key: str) -> Tuple[str, str, str]:
    """ "stream_ms_per_frame" -> it and its process-CPU / user-CPU twins."""
    return key, key.replace("ms", "cpu_ms", 1), key.replace("ms", "user_cpu_ms", 1)


def add_timings(
    res: dict, timings: Dict[str, Tuple[float, float, float]], own_backend: str, train_clips: int
) -> dict:
    """Fold `measure`'s {"[backend/]key": (wall, cpu, user)} into `res` (a "backend/" prefix goes under
    res["backends"][backend]) and copy the model's own backend to the top-level inference keys."""
    for name, clocks in timings.items():
        impl, _, key = name.rpartition("/")
        dst = res["backends"].setdefault(impl, {}) if impl else res
        dst.update(zip(_clock_keys(key), clocks))
        if key == "train_ms_per_step":
            dst["train_clips_per_s"] = train_clips * 1e3 / clocks[0]
    # The model's own backend also fills the top-level keys (the single-backend report).
    for key in _INFERENCE_KEYS:
        for k in _clock_keys(key):
            res[k] = (
                res["backends"][own_backend][k] if own_backend in res["backends"] else res.get(k)
            )
    return res


def add_ratios(res: dict) -> dict:
    """Streaming over window mode, and every backend's time over PyTorch's (keys with "_ms_")."""
    if res.get("stream_ms_per_frame") is not None:
        res["stream_over_window"] = res["stream_ms_per_frame"] / res["window_ms_per_frame"]
        res["stream_over_window_cpu"] = (
            res["stream_cpu_ms_per_frame"] / res["window_cpu_ms_per_frame"]
        )
    for base in (
        "pytorch",
        "kernel",
    ):  # the PyTorch sampling, and the compiled kernel (the default path)
        p = res["backends"].get(base)
        for other in ("kernel", "onnxruntime", "onnxruntime_int8"):
            o = res["backends"].get(other)
            if p is not None and o is not None and other != base:
                res[f"{other}_over_{base}"] = {
                    key: o[key] / p[key] for key in o if "_ms_" in key and p.get(key)
                }
    return res


def add_core_points(res: dict, points: Dict[str, int], shape: Dict[str, int]) -> dict:
    """Record the sampled points of each core call and the shape they come from (`core.core_calls`) and,
    per backend, the core's nanoseconds per sampled point from its wall and process-CPU times."""
    res["core_points_per_call"] = dict(points)
    res["core_shape"] = dict(shape)
    for b in res["backends"].values():
        for part, n in points.items():
            wall, cpu, _ = _clock_keys(f"core_{part}_ms_per_call")
            if wall in b:
                b[f"core_{part}_ns_per_point"] = b[wall] * 1e6 / n
                b[f"core_{part}_cpu_ns_per_point"] = b[cpu] * 1e6 / n
    return res


def write_report(res: dict, json_path: Optional[str] = None) -> str:
    """Print the result as indented JSON and, with `json_path`, write it there atomically; returns the text."""
    text = json.dumps(res, indent=2)
    print(text)
    if json_path:
        from pavenet.utils.atomic import atomic_write_json

        atomic_write_json(json_path, res, indent=2)
    return text
