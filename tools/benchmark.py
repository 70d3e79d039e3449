#!/usr/bin/env python
"""Inference cost of PAVE-Net, in one process on the same input:

* per-frame latency of the streaming (cached per-frame encodings) vs the window (full forward per
  window, as the official demo) mode on one synthetic video, plus the split into per-frame encoding
  (backbone + neck + spatial encoder + the decoders' value maps) and per-window decoding (query
  selection + both decoders on the cached maps);
* per-frame latency (streaming) with 1 vs 20 people in the frame;
* GFLOPs per frame (fvcore; unsupported ops such as grid_sample are listed, not counted);
* with --train-clips N: a training step (forward + backward + optimizer step on N clips; clips/s and
  peak memory), optionally under AMP (--amp).

Stream, encode, decode and the training step are timed for every deformable-attention backend
(--backends: PyTorch and the compiled kernel) on the same model, interleaved in one process; the
results are under "backends" with the ratios in "kernel_over_pytorch". With --backend onnxruntime the
same model is also exported to ONNX (or --onnx-dir is loaded) and its stream / encode / decode run in
ONNX Runtime on the same frames, interleaved with the others ("backends"/"onnxruntime",
"onnxruntime_over_pytorch"; ONNX Runtime gets as many intra-op threads as torch).

  python tools/benchmark.py --config-file configs/posetrack17/pavenet_r50_3f_pt17.yaml \
      --height 384 --width 640 --train-clips 1 --json out/bench.json [--opts MODEL.DEVICE cuda]

Random weights unless MODEL.WEIGHTS is set: the cost does not depend on the weights (fixed query count
and top-k), so the numbers hold for trained models.
"""
import argparse
import itertools
import json
import logging
import os
import platform
import resource
import sys
import tempfile
import time
from typing import Callable, Dict, List, Tuple

import numpy as np
import torch

from detectron2.structures import Instances, Keypoints

from pavenet.config import load_pavenet_config
from pavenet.inference.predictor import ClipPredictor

logger = logging.getLogger("pavenet.benchmark")


def setup_cfg(args):
    cfg = load_pavenet_config(args.config_file, args.opts)
    # Feed frames at exactly H x W: the test resize keeps that size.
    cfg.INPUT.MIN_SIZE_TEST = min(args.height, args.width)
    cfg.INPUT.MAX_SIZE_TEST = max(args.height, args.width)
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logging.getLogger("pavenet").warning("MODEL.DEVICE=%s but CUDA is unavailable: running on CPU", cfg.MODEL.DEVICE)
        cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
    return cfg


def synthetic_video(num_people: int, num_frames: int, height: int, width: int, seed: int = 0) -> List[np.ndarray]:
    """BGR frames of `num_people` walking stick figures, drawn with the synthetic dataset's helpers."""
    from pavenet.data import synthetic as syn

    rng = np.random.default_rng(seed)
    bg = syn.textured_background(rng, width, height)
    people = []
    for i in range(num_people):
        # 1 person: a large figure in the middle; 20: a crowd of smaller ones spread over the frame.
        hp = 0.7 * height if num_people == 1 else float(rng.uniform(0.25, 0.45)) * height
        x0 = width / 2 if num_people == 1 else (i + 0.5) * width / num_people
        people.append(dict(
            track_id=i, hp=hp, x0=x0, vx=float(rng.uniform(-2, 2)), y0=float(rng.uniform(0.55 * hp, height - 0.5 * hp)),
            phase=float(rng.uniform(0, 6.28)), freq=0.4, arm_amp=0.8, arm_base=0.3, wave=False, leg_amp=0.3,
            lean=0.0, torso=tuple(int(c) for c in rng.integers(70, 190, size=3)),
        ))
    frames = []
    for t in range(num_frames):
        img = bg.copy()
        for p in people:
            syn.draw_person(img, p, syn.person_pose(p, t))
        frames.append(np.ascontiguousarray(img[:, :, ::-1]))  # RGB -> BGR, as OpenCV reads videos
    return frames


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _user_cpu() -> float:
    """User CPU seconds of this process (getrusage: microseconds, unlike os.times' clock ticks)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_utime


def measure(tasks: Dict[str, Tuple[Callable, int]], device, repeats: int) -> Dict[str, Tuple[float, float, float]]:
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
            w, c = (time.perf_counter() - w0) * 1e3 / units, (time.process_time() - c0) * 1e3 / units
            u = (_user_cpu() - u0) * 1e3 / units
            best[name] = tuple(min(a, b) for a, b in zip(best[name], (w, c, u)))
    return best


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
    info = {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    try:
        info["load_avg_1min"] = os.getloadavg()[0]  # other processes share the CPU: say how busy it was
    except OSError:
        pass
    return info


def _sdpa_flop_jit(inputs, outputs):
    """MACs of scaled_dot_product_attention (fvcore has no handle): q @ k^T plus attn @ v."""
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(x) for x in inputs[:3])
    rows = int(np.prod(q[:-1]))
    return rows * k[-2] * q[-1] + rows * k[-2] * v[-1]


def count_gflops(predictor: ClipPredictor, frame: np.ndarray) -> dict:
    """fvcore GFLOPs of encoding one frame and decoding one window (unsupported ops tolerated)."""
    from fvcore.nn import FlopCountAnalysis

    model = predictor.model
    F = predictor.num_frames
    image = predictor._make_prepare()(frame)
    images, image_size = model.preprocess_frames(image[None].to(predictor.device))
    feats = model.encode_frames(images)
    window = type(feats).cat([feats] * F)  # with each frame's cached decoder value maps, as streaming has them
    out_size = frame.shape[:2]

    class Encode(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x):
            f = self.model.encode_frames(x)
            return (f.memory, f.valid_ratios, *f.values)  # the value maps are part of a frame's encoding

    class Decode(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, memory, padding_mask, valid_ratios, *values):
            f = type(window)(memory, padding_mask, window.spatial_shapes, window.level_start_index, valid_ratios,
                             list(values))
            out = self.model.decode_clip(f, image_size=image_size, output_size=out_size)
            return out.pred_keypoints, out.scores

    res = {}
    unsupported = {}
    for name, mod, inputs in (("encode", Encode(), (images,)),
                              ("decode", Decode(), (window.memory, window.padding_mask, window.valid_ratios,
                                                    *window.values))):
        fca = FlopCountAnalysis(mod.eval(), inputs)
        fca.set_op_handle("aten::scaled_dot_product_attention", _sdpa_flop_jit)
        fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        res[name] = fca.total() / 1e9
        for op, n in fca.unsupported_ops().items():
            unsupported[op] = unsupported.get(op, 0) + n
    return {
        "gflops_encode_per_frame": res["encode"], "gflops_decode_per_window": res["decode"],
        "gflops_per_frame": res["encode"] + res["decode"],  # streaming: one encode + one decode per frame
        "gflops_per_frame_window": F * res["encode"] + res["decode"],
        # Not counted (fvcore counts multiply-adds of conv/linear/matmul/grid_sample/...; elementwise ops no).
        "fvcore_uncounted_ops": sorted(unsupported),
    }


def synthetic_train_batch(frames_bgr: List[np.ndarray], num_frames: int, clips: int, num_keypoints: int,
                          people: int = 5, seed: int = 0) -> List[dict]:
    """`clips` clip-mapper-style training dicts: (F, 3, H, W) uint8 RGB images of consecutive frames and
    `people` persons with random visible keypoints (the step's cost does not depend on where they are)."""
    g = torch.Generator().manual_seed(seed)
    h, w = frames_bgr[0].shape[:2]
    out = []
    for c in range(clips):
        idx = [min(c + i, len(frames_bgr) - 1) for i in range(num_frames)]
        images = torch.stack([torch.from_numpy(np.ascontiguousarray(frames_bgr[i][:, :, ::-1].transpose(2, 0, 1)))
                              for i in idx])
        inst = Instances((h, w))
        kp = torch.rand(people, num_keypoints, 3, generator=g) * torch.tensor([w, h, 1.0])
        kp[..., 2] = 2
        inst.gt_keypoints = Keypoints(kp)
        inst.gt_areas = torch.full((people,), 0.05 * h * w)
        inst.gt_classes = torch.zeros(people, dtype=torch.long)
        out.append({"images": images, "height": h, "width": w, "instances": inst})
    return out


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


def peak_memory_mb(fn: Callable[[], None], device) -> float:
    """Peak tensor memory of one call of `fn`, in MiB above what was allocated before it. CUDA: the
    allocator's peak. CPU: the running sum of the profiler's allocations and frees (op granularity)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2 ** 20
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    live = peak = 0
    for e in sorted((e for e in prof.events() if e.self_cpu_memory_usage), key=lambda e: e.time_range.start):
        live += e.self_cpu_memory_usage
        peak = max(peak, live)
    return peak / 2 ** 20


def backends_to_run(arg: str) -> List[str]:
    from pavenet.modeling.msda_backend import kernel_available, resolve_msda_impl

    if arg == "all":
        return ["pytorch"] + (["kernel"] if kernel_available() else [])
    names = [b.strip() for b in arg.split(",") if b.strip()]
    for b in names:
        if resolve_msda_impl(b) != b:  # "auto" is not a backend; "kernel" raises if it is missing
            raise ValueError(f"--backends: {b!r} is not a backend (pytorch, kernel)")
    return names


def ort_predictor(cfg, model, onnx_dir, height: int, width: int, tmp: str) -> ClipPredictor:
    """A ClipPredictor on ONNX Runtime: the graphs in `onnx_dir`, or `model` exported into `tmp`."""
    from pavenet.export import OrtClipModel, export_onnx

    if not onnx_dir:
        onnx_dir = tmp
        export_onnx(model, cfg, onnx_dir, height, width)
    return ClipPredictor(cfg, backend=OrtClipModel(onnx_dir, cfg, threads=torch.get_num_threads()))


def run(args) -> dict:
    with tempfile.TemporaryDirectory(prefix="pavenet_bench_onnx_") as tmp:
        return _run(args, tmp)


def _run(args, tmp: str) -> dict:
    from pavenet.modeling.msda_backend import set_msda_impl

    cfg = setup_cfg(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    predictor = ClipPredictor(cfg)
    model = predictor.model
    device = predictor.device
    F = predictor.num_frames
    H, W, N = args.height, args.width, args.frames
    backends = backends_to_run(args.backends)
    video = synthetic_video(5, N, H, W, seed=1)
    ort = ort_predictor(cfg, model, args.onnx_dir, H, W, tmp) if args.backend == "onnxruntime" else None
    logger.info("model built; %d-frame %dx%d video, F=%d, device %s, backends %s", N, H, W, F, device, backends)

    def consume(gen):
        for _ in gen:
            pass

    def on(impl, fn):  # the same model, switched to one backend for this call
        def call():
            set_msda_impl(model, impl, log=False)
            return fn()
        return call

    res = {"config": args.config_file, "height": H, "width": W, "num_frames": F, "video_frames": N,
           "weights": cfg.MODEL.WEIGHTS or "random", "topk": int(cfg.MODEL.PAVENET.TEST.TOPK),
           "num_queries": int(cfg.MODEL.PAVENET.NUM_QUERIES), "msda_impl": model.msda_impl, "backends": {}}
    train_steps = {}
    if args.train_clips:
        batch = synthetic_train_batch(video, F, args.train_clips, int(cfg.MODEL.PAVENET.NUM_KEYPOINTS))
        step = make_train_step(cfg, model, batch, args.amp)
        for impl in backends:
            train_steps[impl] = on(impl, step)
            on(impl, step)()  # warm-up
            if device.type == "cuda" or args.cpu_memory:
                res["backends"].setdefault(impl, {})["train_peak_mb"] = peak_memory_mb(train_steps[impl], device)
        res.update(train_clips_per_step=args.train_clips, train_amp=bool(args.amp))
    with torch.no_grad():
        # Warm-up both paths (allocators, lazy init, cudnn autotune) on the benchmark's frame size.
        for impl in backends:
            on(impl, lambda: consume(predictor.stream(video[:F])))()
        consume(predictor.window(video[:F]))
        # Where streaming's time goes: one encode per frame + one decode per window.
        image = predictor._make_prepare()(video[0])
        feats, image_size = predictor.encode(image)
        window = [feats] * F  # as the streaming predictor passes a window: the cached frames, not concatenated
        if ort is not None:
            consume(ort.stream(video[:F]))
            ort_window = [ort.encode(image)[0]] * F
        crowd = {n: synthetic_video(n, N, H, W, seed=2) for n in (1, 20)}
        # With the model's own backend (MSDA_IMPL): window mode and the people count.
        tasks = {
            "window_ms_per_frame": (lambda: consume(predictor.window(video)), N),
            "ms_1_person": (lambda: consume(predictor.stream(crowd[1])), N),
            "ms_20_persons": (lambda: consume(predictor.stream(crowd[20])), N),
        }
        # Per backend, interleaved in one process: stream, encode, decode (and the train step).
        for impl in backends:
            tasks[f"{impl}/stream_ms_per_frame"] = (on(impl, lambda: consume(predictor.stream(video))), N)
            tasks[f"{impl}/encode_ms_per_frame"] = (on(impl, lambda: predictor.encode(image)), 1)
            tasks[f"{impl}/decode_ms_per_window"] = (on(impl, lambda: model.decode_clip(
                window, image_size=image_size, output_size=(H, W))), 1)
            if impl in train_steps:
                tasks[f"{impl}/train_ms_per_step"] = (torch.enable_grad()(train_steps[impl]), 1)
        if ort is not None:  # the exported graphs on the same frames, in the same interleaved rounds
            tasks["onnxruntime/stream_ms_per_frame"] = (lambda: consume(ort.stream(video)), N)
            tasks["onnxruntime/encode_ms_per_frame"] = (lambda: ort.encode(image), 1)
            tasks["onnxruntime/decode_ms_per_window"] = (
                lambda: ort.backend.decode_clip(ort_window, image_size, (H, W)), 1)
        own = model.msda_impl
        timings = measure(tasks, device, args.repeats)
        set_msda_impl(model, own, log=False)
        for name, (wall, cpu, user) in timings.items():
            impl, _, key = name.rpartition("/")
            dst = res["backends"].setdefault(impl, {}) if impl else res
            dst[key] = wall
            dst[key.replace("ms", "cpu_ms", 1)] = cpu
            dst[key.replace("ms", "user_cpu_ms", 1)] = user
            if key == "train_ms_per_step":
                dst["train_clips_per_s"] = args.train_clips * 1e3 / wall
        # The model's own backend also fills the top-level keys (the single-backend report).
        for key in ("stream_ms_per_frame", "encode_ms_per_frame", "decode_ms_per_window"):
            for k in (key, key.replace("ms", "cpu_ms", 1), key.replace("ms", "user_cpu_ms", 1)):
                res[k] = res["backends"][own][k] if own in res["backends"] else res.get(k)
        if res.get("stream_ms_per_frame") is not None:
            res["stream_over_window"] = res["stream_ms_per_frame"] / res["window_ms_per_frame"]
            res["stream_over_window_cpu"] = res["stream_cpu_ms_per_frame"] / res["window_cpu_ms_per_frame"]
        if {"pytorch", "kernel"} <= set(res["backends"]):
            p, k = res["backends"]["pytorch"], res["backends"]["kernel"]
            res["kernel_over_pytorch"] = {key: k[key] / p[key] for key in k if "_ms_" in key and key in p}
        if {"pytorch", "onnxruntime"} <= set(res["backends"]):
            p, o = res["backends"]["pytorch"], res["backends"]["onnxruntime"]
            res["onnxruntime_over_pytorch"] = {key: o[key] / p[key] for key in o if "_ms_" in key and key in p}
        if not args.no_flops:
            set_msda_impl(model, "pytorch", log=False)  # fvcore counts grid_sample, not the compiled op
            res.update(count_gflops(predictor, video[0]))
            set_msda_impl(model, own, log=False)
    res["machine"] = machine_info(device)
    res["torch_threads"] = torch.get_num_threads()
    res["device"] = res["machine"].get("gpu", str(device))
    return res


def get_parser():
    p = argparse.ArgumentParser(description="PAVE-Net streaming vs window latency, people count, GFLOPs")
    p.add_argument("--config-file", required=True, metavar="FILE")
    p.add_argument("--height", type=int, default=384)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--frames", type=int, default=6, help="length of the benchmark video")
    p.add_argument("--repeats", type=int, default=3, help="best of this many interleaved runs per measurement")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--no-flops", action="store_true", help="skip the fvcore count")
    p.add_argument("--backends", default="all",
                   help="deformable-attention backends to time side by side: 'all' (pytorch, and kernel if "
                        "installed) or a comma list of pytorch,kernel")
    p.add_argument("--backend", choices=["pytorch", "onnxruntime"], default="pytorch",
                   help="onnxruntime: also time the exported ONNX graphs in ONNX Runtime beside PyTorch")
    p.add_argument("--onnx-dir", help="with --backend onnxruntime: graphs exported from this config (default: "
                                      "export the benchmark's model to a temporary folder)")
    p.add_argument("--train-clips", type=int, default=0,
                   help="also time a training step (forward, backward, optimizer) on this many clips (0: off)")
    p.add_argument("--cpu-memory", action="store_true",
                   help="on CPU, also measure the training step's peak memory (profiler: ~20x one step's time)")
    p.add_argument("--amp", action="store_true", help="the training step under SOLVER.AMP (bf16 on CPU, fp16 on CUDA)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--opts", default=[], nargs=argparse.REMAINDER, help="config KEY VALUE pairs")
    return p


def main(argv=None) -> dict:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    res = run(args)
    text = json.dumps(res, indent=2)
    print(text)
    if args.json:
        from pavenet.evaluation.writer import atomic_write_json

        atomic_write_json(args.json, res, indent=2)
    return res


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
