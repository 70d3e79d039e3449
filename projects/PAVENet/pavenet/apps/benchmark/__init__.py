"""The inference and training-step cost benchmark behind tools/benchmark.py: synthetic inputs
(`synthetic`), interleaved timing and memory (`timing`), fvcore GFLOPs (`flops`), the sampling core alone
(`core`), the runs (`runs.run_benchmark`) and the result dict / JSON report (`report`). Nothing else in the
package imports it: it sits on top of inference, modeling, data and export."""

from .core import core_calls
from .flops import count_gflops
from .report import add_core_points, add_ratios, add_timings, write_report
from .runs import backends_to_run, benchmark_cfg, make_train_step, ort_predictor, run_benchmark
from .synthetic import synthetic_train_batch, synthetic_video
from .timing import machine_info, measure, peak_memory_mb

__all__ = [
    "add_core_points",
    "add_ratios",
    "add_timings",
    "backends_to_run",
    "benchmark_cfg",
    "core_calls",
    "count_gflops",
    "machine_info",
    "make_train_step",
    "measure",
    "ort_predictor",
    "peak_memory_mb",
    "run_benchmark",
    "synthetic_train_batch",
    "synthetic_video",
    "write_report",
]
