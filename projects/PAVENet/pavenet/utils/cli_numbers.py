"""The checks on the numbers our command lines take: counts, sizes and the process count of a launch.

Every tool (and the library function behind it) checks its numbers here before building anything, so a
zero, a negative value or a process count this machine cannot run fails with one ValueError naming the
option and what was expected, instead of a NaN in a report or an assertion inside a spawned worker.
"""

import importlib
import inspect

__all__ = ["MIN_FRAME_SIDE", "check_int", "check_num_gpus", "launch_runs_without_cuda"]

# The smallest frame side accepted (frame sources, benchmark sizes): a smaller frame, upscaled to
# INPUT.MIN_SIZE_TEST, holds no person to find, and video writers refuse sizes near one pixel.
MIN_FRAME_SIDE = 16


def check_int(value, option: str, minimum: int) -> int:
    """`value` as an int >= `minimum`; else ValueError naming `option` (e.g. "--repeats")."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{option} must be an integer >= {minimum}, got {value!r}")
    return value


def launch_runs_without_cuda() -> bool:
    """Whether detectron2's `launch` can run several processes on a machine without CUDA. Upstream main's
    workers join a gloo group when there is no GPU; v0.6's assert CUDA inside each spawned worker. Both
    call themselves 0.6, so this looks at what the worker does rather than at the version."""
    # The module: `detectron2.engine.launch` as an attribute is the function it re-exports.
    launch_module = importlib.import_module("detectron2.engine.launch")
    worker = getattr(launch_module, "_distributed_worker", None)
    try:
        source = inspect.getsource(worker) if worker is not None else ""
    except (OSError, TypeError):  # no source shipped: assume the older behaviour
        return False
    return "gloo" in source.lower()


def check_num_gpus(num_gpus, num_machines: int = 1) -> None:
    """Refuse, before any process is spawned, a `--num-gpus` this machine cannot run: not a positive integer,
    more processes than CUDA devices, or several processes without CUDA on a detectron2 whose `launch`
    needs it (`launch_runs_without_cuda`)."""
    import torch

    check_int(num_gpus, "--num-gpus", 1)
    if torch.cuda.is_available():
        if num_gpus > torch.cuda.device_count():
            raise ValueError(
                f"--num-gpus {num_gpus}: this machine has {torch.cuda.device_count()} CUDA device(s); "
                "give at most that many"
            )
    elif num_gpus * num_machines > 1 and not launch_runs_without_cuda():
        raise ValueError(
            f"--num-gpus {num_gpus}: this machine has no CUDA device, and this detectron2's launch starts one "
            "process per CUDA device; train on the CPU with --num-gpus 1 (or use a detectron2 whose launch "
            "supports CPU workers)"
        )
