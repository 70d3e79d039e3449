"""How the benchmark measures: interleaved best-of-N timing (wall, process CPU, user CPU), peak tensor
memory of one call, and a description of the machine the numbers come from."""

import os
import platform
import resource
import time
from typing import Callable, Dict, Tuple

import torch

__all__ = ["measure", "peak_memory_mb", "machine_info"]


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _user_cpu() -> float:
    """User CPU seconds of this process (getrusage: microseconds, unlike os.times' clock ticks)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_utime


def measure(
    tasks: Dict[str, Tuple[Callable, int]], device, repeats: int
) -> Dict[str, Tuple[float, float, float]]:
    """Best-of-`repeats` (wall, process CPU, user CPU) milliseconds per unit for each task {name: (fn, units)}.

    Rounds are interleaved (A, B, C, A, B, C, ...) so every task sees the same background load, and the
    minimum filters out interference from other processes. Process CPU time (all threads, user + system)
    is reported too: on a shared machine it tracks the work done far better than wall time (with 1 torch
    thread it is not inflated by OpenMP spin-waits either). Its user part alone leaves out the kernel's
    time, mostly page faults of large tensors freshly mapped by the allocator, which varies with the
    allocator's state from run to run."""
    best = {k: (float("inf"),) * 3 for k in tasks}
    for _ in range(repeats):
        for name, (fn, units) in tasks.items():
            _sync(device)
            w0, c0, u0 = time.perf_counter(), time.process_time(), _user_cpu()
            fn()
            _sync(device)
            w, c = (
                (time.perf_counter() - w0) * 1e3 / units,
                (time.process_time() - c0) * 1e3 / units,
            )
            u = (_user_cpu() - u0) * 1e3 / units
            best[name] = tuple(min(a, b) for a, b in zip(best[name], (w, c, u)))
    return best


def peak_memory_mb(fn: Callable[[], None], device) -> float:
    """Peak tensor memory of one call of `fn`, in MiB above what was allocated before it. CUDA: the
    allocator's peak. CPU: the running sum of the profiler's allocations and frees (op granularity)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    live = peak = 0
    for e in sorted(
        (e for e in prof.events() if e.self_cpu_memory_usage), key=lambda e: e.time_range.start
    ):
        live += e.self_cpu_memory_usage
        peak = max(peak, live)
    return peak / 2**20


def machine_info(device) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    try:
        info["load_avg_1min"] = os.getloadavg()[
            0
        ]  # other processes share the CPU: say how busy it was
    except OSError:
        pass
    return info
