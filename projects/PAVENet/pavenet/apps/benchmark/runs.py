"""What the benchmark runs, in one process on the same model and frames: streaming vs window inference,
the per-frame encoding and per-window decoding, 1 vs 20 people, optionally a training step, for every
deformable-attention backend side by side (and the exported ONNX graphs in ONNX Runtime on request).
`run_benchmark` is the entry point behind tools/benchmark.py."""

import itertools
import logging
import os
import tempfile
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch

from pavenet.config import frozen_config
from pavenet.inference.predictor import ClipPredictor
from pavenet.utils.cli_numbers import check_int

from .core import core_calls
from .flops import count_gflops
from .report import add_core_points, add_ratios, add_timings
from .synthetic import MIN_SIDE, synthetic_train_batch, synthetic_video
from .timing import machine_info, measure, peak_memory_mb

__all__ = ["benchmark_cfg", "backends_to_run", "make_train_step", "ort_predictor", "run_benchmark"]

logger = logging.getLogger("pavenet.apps.benchmark")


def benchmark_cfg(config_file: str, opts: Sequence = (), height: int = 384, width: int = 640):
    """The frozen config of `config_file` + `opts`, fed frames at exactly height x width (on the CPU when
    it asks for CUDA that is not there)."""

    def exact_size(cfg):  # the test resize keeps H x W
        cfg.INPUT.MIN_SIZE_TEST = min(height, width)
        cfg.INPUT.MAX_SIZE_TEST = max(height, width)

    cfg, device_warning = frozen_config(config_file, opts, exact_size)
    if device_warning:
        logging.getLogger("pavenet").warning(device_warning)
    return cfg


def backends_to_run(arg: str) -> List[str]:
    """'all' (pytorch, and kernel when compiled) or a comma list of pytorch,kernel."""
    from pavenet.modeling.msda_backend import kernel_available, resolve_msda_impl

    if arg == "all":
        return ["pytorch"] + (["kernel"] if kernel_available() else [])
    names = [b.strip() for b in arg.split(",") if b.strip()]
    for b in names:
        if b not in ("pytorch", "kernel"):
            raise ValueError(
                f"--backends: {b!r} is not a backend; expected 'all' or a comma list of pytorch, kernel"
            )
        resolve_msda_impl(b)  # "kernel" raises if it is not installed
    if not names:
        raise ValueError(
            f"--backends {arg!r} names no backend; expected 'all' or a comma list of pytorch, kernel"
        )
    return names


def make_train_step(cfg, model, batch, amp: bool) -> Callable[[], None]:
    """One optimizer step (forward + backward + AdamW with full-model clipping) on `batch`, through the
    same trainer classes that tools/train_net.py uses (AMP: bf16 on CPU, fp16 + GradScaler on CUDA)."""
    from detectron2.engine import SimpleTrainer
    from detectron2.utils.events import EventStorage

    from pavenet.engine import build_pavenet_optimizer
    from pavenet.engine.amp import AMPTrainer, amp_dtype

    optimizer = build_pavenet_optimizer(cfg, model)
    loader = itertools.repeat(batch)
    if amp:
        trainer = AMPTrainer(model, loader, optimizer, model.device.type, amp_dtype(cfg))
    else:
        trainer = SimpleTrainer(model, loader, optimizer)
    model.eval()

    def step():
        model.train()
        with EventStorage(0):
            trainer.run_step()
        model.eval()

    return step


def ort_predictor(
    cfg,
    model,
    onnx_dir: Optional[str],
    height: int,
    width: int,
    tmp: str,
    precision: str = "fp32",
    calibration=(),
    on_mismatch: str = "error",
) -> ClipPredictor:
    """A ClipPredictor on ONNX Runtime: the graphs in `onnx_dir`, or `model` exported into `tmp` (int8:
    quantised there too, calibrated on `calibration`, encoder inputs (1, 3, h, w) float32)."""
    from pavenet.export import (
        DECODER_FILE,
        ENCODER_INT8_FILE,
        OrtClipModel,
        export_onnx,
        quantize_graphs,
    )

    if not onnx_dir:
        onnx_dir = tmp
        if not os.path.isfile(os.path.join(tmp, DECODER_FILE)):
            export_onnx(model, cfg, onnx_dir, height, width)
        if precision == "int8" and not os.path.isfile(os.path.join(tmp, ENCODER_INT8_FILE)):
            quantize_graphs(onnx_dir, list(calibration), "benchmark video")
    return ClipPredictor(
        cfg,
        backend=OrtClipModel(
            onnx_dir,
            cfg,
            threads=torch.get_num_threads(),
            on_mismatch=on_mismatch,
            precision=precision,
        ),
    )


def _consume(gen):
    for _ in gen:
        pass


def run_benchmark(
    config_file: str,
    opts: Sequence = (),
    *,
    height: int = 384,
    width: int = 640,
    frames: int = 6,
    repeats: int = 3,
    threads: int = 0,
    flops: bool = True,
    backends: str = "all",
    backend: str = "pytorch",
    onnx_dir: Optional[str] = None,
    train_clips: int = 0,
    cpu_memory: bool = False,
    amp: bool = False,
    on_mismatch: str = "error",
) -> dict:
    """Time PAVE-Net on a `frames`-long synthetic height x width video; returns the result dict (the keys
    of docs/BENCHMARKS.md). `backends`: see `backends_to_run`; backend "onnxruntime" also times the
    graphs in `onnx_dir` (default: the model exported to a temporary folder) and "onnxruntime-int8" its int8
    graphs as well (exported ones calibrated on the benchmark's video); `train_clips` > 0 also
    times a training step on that many clips (`amp`: under AMP; `cpu_memory`: its peak memory on CPU)."""
    for option, value, minimum in (
        ("--height", height, MIN_SIDE),
        ("--width", width, MIN_SIDE),
        ("--frames", frames, 1),
        ("--repeats", repeats, 1),
        ("--threads", threads, 0),
        ("--train-clips", train_clips, 0),
    ):
        check_int(
            value, option, minimum
        )  # before the model is built: no Infinity / NaN in the report
    impls = backends_to_run(backends)
    with tempfile.TemporaryDirectory(prefix="pavenet_bench_onnx_") as tmp:
        from pavenet.modeling.msda_backend import set_msda_impl

        cfg = benchmark_cfg(config_file, opts, height, width)
        if threads:
            torch.set_num_threads(threads)
        predictor = ClipPredictor(cfg)
        model, device, F = predictor.model, predictor.device, predictor.num_frames
        H, W, N = height, width, frames
        video = synthetic_video(5, N, H, W, seed=1)
        ort = (
            ort_predictor(cfg, model, onnx_dir, H, W, tmp, on_mismatch=on_mismatch)
            if backend != "pytorch"
            else None
        )
        int8 = None
        if backend == "onnxruntime-int8":
            calibration = [predictor.prepare(f).numpy()[None].astype(np.float32) for f in video]
            int8 = ort_predictor(cfg, model, onnx_dir, H, W, tmp, "int8", calibration, on_mismatch)
        logger.info(
            "model built; %d-frame %dx%d video, F=%d, device %s, backends %s",
            N,
            H,
            W,
            F,
            device,
            impls,
        )

        def on(impl, fn):  # the same model, switched to one backend for this call
            def call():
                set_msda_impl(model, impl, log=False)
                return fn()

            return call

        res = {
            "config": config_file,
            "height": H,
            "width": W,
            "num_frames": F,
            "video_frames": N,
            "weights": cfg.MODEL.WEIGHTS or "random",
            "topk": int(cfg.MODEL.PAVENET.TEST.TOPK),
            "num_queries": int(cfg.MODEL.PAVENET.NUM_QUERIES),
            "msda_impl": model.msda_impl,
            "backends": {},
        }
        # Inference first, training after. On CPU, after a training step in the same process the PyTorch
        # backend's inference stops page-faulting (docs/BENCHMARKS.md, "Sampling core"): timed after it,
        # inference would not be what an inference-only process (the demo) sees.
        with torch.no_grad():
            # Warm-up both paths (allocators, lazy init, cudnn autotune) on the benchmark's frame size.
            for impl in impls:
                on(impl, lambda: _consume(predictor.stream(video[:F])))()
            _consume(predictor.window(video[:F]))
            # Where streaming's time goes: one encode per frame + one decode per window.
            image = predictor.prepare(video[0])
            feats, image_size = predictor.encode(image)
            window = [
                feats
            ] * F  # as the streaming predictor passes a window: the cached frames, not concatenated
            if ort is not None:
                _consume(ort.stream(video[:F]))
                ort_window = [ort.encode(image)[0]] * F
            if int8 is not None:
                _consume(int8.stream(video[:F]))
                int8_window = [int8.encode(image)[0]] * F
            crowd = {n: synthetic_video(n, N, H, W, seed=2) for n in (1, 20)}
            # With the model's own backend (MSDA_IMPL): window mode and the people count.
            tasks = {
                "window_ms_per_frame": (lambda: _consume(predictor.window(video)), N),
                "ms_1_person": (lambda: _consume(predictor.stream(crowd[1])), N),
                "ms_20_persons": (lambda: _consume(predictor.stream(crowd[20])), N),
            }
            # The sampling core alone (what differs between backends), at this model's shapes.
            core, core_shape = core_calls(model, feats, F, int(cfg.MODEL.PAVENET.NUM_QUERIES))
            # Per backend, interleaved in one process: stream, encode, decode and the core.
            for impl in impls:
                for part, (call, _) in core.items():
                    tasks[f"{impl}/core_{part}_ms_per_call"] = (
                        lambda call=call, impl=impl: call(impl),
                        1,
                    )
                tasks[f"{impl}/stream_ms_per_frame"] = (
                    on(impl, lambda: _consume(predictor.stream(video))),
                    N,
                )
                tasks[f"{impl}/encode_ms_per_frame"] = (
                    on(impl, lambda: predictor.encode(image)),
                    1,
                )
                tasks[f"{impl}/decode_ms_per_window"] = (
                    on(
                        impl,
                        lambda: model.decode_clip(
                            window, image_size=image_size, output_size=(H, W)
                        ),
                    ),
                    1,
                )
            if (
                ort is not None
            ):  # the exported graphs on the same frames, in the same interleaved rounds
                tasks["onnxruntime/stream_ms_per_frame"] = (lambda: _consume(ort.stream(video)), N)
                tasks["onnxruntime/encode_ms_per_frame"] = (lambda: ort.encode(image), 1)
                tasks["onnxruntime/decode_ms_per_window"] = (
                    lambda: ort.backend.decode_clip(ort_window, image_size, (H, W)),
                    1,
                )
            if int8 is not None:
                tasks["onnxruntime_int8/stream_ms_per_frame"] = (
                    lambda: _consume(int8.stream(video)),
                    N,
                )
                tasks["onnxruntime_int8/encode_ms_per_frame"] = (lambda: int8.encode(image), 1)
                tasks["onnxruntime_int8/decode_ms_per_window"] = (
                    lambda: int8.backend.decode_clip(int8_window, image_size, (H, W)),
                    1,
                )
            own = model.msda_impl
            timings = measure(tasks, device, repeats)
            set_msda_impl(model, own, log=False)
            add_ratios(add_timings(res, timings, own, train_clips))
            add_core_points(res, {part: points for part, (_, points) in core.items()}, core_shape)
            if flops:
                set_msda_impl(
                    model, "pytorch", log=False
                )  # fvcore counts grid_sample, not the compiled op
                res.update(count_gflops(predictor, video[0]))
                set_msda_impl(model, own, log=False)
        if (
            train_clips
        ):  # the training step of every backend, interleaved (after a warm-up and the peak memory)
            batch = synthetic_train_batch(
                video, F, train_clips, int(cfg.MODEL.PAVENET.NUM_KEYPOINTS)
            )
            step = make_train_step(cfg, model, batch, amp)
            train_tasks = {}
            for impl in impls:
                train_tasks[f"{impl}/train_ms_per_step"] = (on(impl, step), 1)
                on(impl, step)()  # warm-up
                if device.type == "cuda" or cpu_memory:
                    res["backends"][impl]["train_peak_mb"] = peak_memory_mb(on(impl, step), device)
            add_ratios(add_timings(res, measure(train_tasks, device, repeats), own, train_clips))
            set_msda_impl(model, own, log=False)
            res.update(train_clips_per_step=train_clips, train_amp=bool(amp))
        res["machine"] = machine_info(device)
        res["torch_threads"] = torch.get_num_threads()
        res["device"] = res["machine"].get("gpu", str(device))
        return res
