"""`Trainer(DefaultTrainer)`: PAVE-Net's data loaders, evaluator, optimizer and safe checkpointing.

`SOLVER.IMS_PER_BATCH` counts clips (each clip is F frames) across all processes.
"""

import contextlib
import logging
import os
import random
import weakref
from collections import OrderedDict
from typing import Any, Dict, List

import detectron2.utils.comm as comm
import numpy as np
import torch
from detectron2.data import MetadataCatalog
from detectron2.engine import DefaultTrainer, SimpleTrainer, TrainerBase, create_ddp_model, hooks
from detectron2.evaluation import COCOEvaluator, DatasetEvaluator
from detectron2.utils.logger import setup_logger

from ..checkpoint import PAVENetCheckpointer
from ..data.build import (
    build_pavenet_test_loader,
    build_pavenet_train_loader,
    build_pavenet_video_test_loader,
)
from ..evaluation.posetrack_evaluator import PoseTrackEvaluator
from ..evaluation.video_inference import VideoInference, video_mode
from .amp import AMPTrainer, amp_dtype
from .ema import EMAHook, ModelEMA


def build_optimizer_param_groups(cfg, model: torch.nn.Module) -> List[Dict[str, Any]]:
    """Parameter groups by lr multiplier (docs/REFERENCE.md §10): names containing `backbone` or `sampling_offsets`
    (this includes the per-frame `pre_`/`next_` offsets) get their multiplier, the rest the base lr.

    As in the official recipe, weight decay applies to every parameter (no norm/bias exemptions). Each group
    lists its parameters' `names`. Few groups keep the optimizer's multi-tensor (foreach) step fast; only
    parameters over one storage (the joint decoder's tied offset biases, docs/MODEL.md) go to further groups of
    the same settings, one per repeat: a multi-tensor step would otherwise decay all of them before it updates
    any, whereas each must see the storage its predecessor left, as in the official per-parameter updates.
    """
    multipliers = {
        "base": 1.0,
        "backbone": cfg.SOLVER.BACKBONE_MULTIPLIER,
        "sampling_offsets": cfg.SOLVER.SAMPLING_OFFSET_MULTIPLIER,
    }
    groups = {
        key: {
            "params": [],
            "names": [],
            "lr": cfg.SOLVER.BASE_LR * mult,
            "weight_decay": cfg.SOLVER.WEIGHT_DECAY,
        }
        for key, mult in multipliers.items()
    }
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        key = (
            "backbone"
            if "backbone" in name
            else "sampling_offsets"
            if "sampling_offsets" in name
            else "base"
        )
        groups[key]["params"].append(param)
        groups[key]["names"].append(name)
    out = []
    for group in groups.values():
        rounds: List[Dict[str, Any]] = []  # rounds[i]: every storage's i-th parameter
        seen: Dict[Any, int] = {}
        for param, name in zip(group["params"], group["names"]):
            storage = (
                (param.device, param.untyped_storage().data_ptr()) if param.numel() else id(param)
            )
            i = seen[storage] = seen.get(storage, -1) + 1
            if i == len(rounds):
                rounds.append(dict(group, params=[], names=[]))
            rounds[i]["params"].append(param)
            rounds[i]["names"].append(name)
        out.extend(rounds)
    return out


def _with_full_model_clipping(optim_cls, max_norm: float, norm_type: float):
    """Subclass `optim_cls` so that `step()` first clips the global gradient norm of all its params."""

    class FullModelClippedOptimizer(optim_cls):
        def step(self, closure=None):
            params = [p for group in self.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type=norm_type, foreach=True)
            return super().step(closure=closure)

    FullModelClippedOptimizer.__name__ = optim_cls.__name__ + "WithFullModelClipping"
    return FullModelClippedOptimizer


def build_pavenet_optimizer(cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
    groups = build_optimizer_param_groups(cfg, model)
    name = cfg.SOLVER.OPTIMIZER.upper()
    if name == "ADAMW":
        optim_cls, kwargs = torch.optim.AdamW, {}
    elif name == "SGD":
        optim_cls, kwargs = torch.optim.SGD, {"momentum": cfg.SOLVER.MOMENTUM}
    else:
        raise ValueError(f"SOLVER.OPTIMIZER must be ADAMW or SGD, got {cfg.SOLVER.OPTIMIZER!r}")
    clip = cfg.SOLVER.CLIP_GRADIENTS
    if clip.ENABLED:
        if clip.CLIP_TYPE != "full_model":
            raise ValueError(
                f"SOLVER.CLIP_GRADIENTS.CLIP_TYPE={clip.CLIP_TYPE!r} is not supported by PAVE-Net; use 'full_model'"
            )
        optim_cls = _with_full_model_clipping(optim_cls, clip.CLIP_VALUE, clip.NORM_TYPE)
    # The multi-tensor step (PyTorch's default on CUDA only) also on CPU: the same weights as the per-parameter
    # loop (the tied biases' groups keep its order), with a few batched ops per step instead of several per tensor.
    return optim_cls(
        groups, lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY, foreach=True, **kwargs
    )


def _rng_state() -> Dict[str, Any]:
    """Python, NumPy and torch RNG states as tensors and plain values (weights_only-loadable)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
        "torch": torch.get_rng_state(),
    }


def _set_rng_state(state: Dict[str, Any]) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])


def build_ddp_model(cfg, model: torch.nn.Module) -> torch.nn.Module:
    """detectron2's `create_ddp_model` (a no-op in one process); on the CPU without `device_ids`, which DDP
    rejects for CPU modules and detectron2 would set to the local rank (gloo multi-process training on CPUs)."""
    kwargs = {"broadcast_buffers": False}
    if torch.device(cfg.MODEL.DEVICE).type == "cpu":
        kwargs["device_ids"] = None
    return create_ddp_model(model, **kwargs)


def build_train_loop(cfg, model, data_loader, optimizer) -> SimpleTrainer:
    """detectron2's SimpleTrainer, or with SOLVER.AMP.ENABLED our AMPTrainer (bf16 on the CPU, fp16 + GradScaler
    on CUDA; detectron2 v0.6's asserts CUDA). Its `state_dict` holds the optimizer and any GradScaler."""
    if cfg.SOLVER.AMP.ENABLED:
        return AMPTrainer(
            model, data_loader, optimizer, torch.device(cfg.MODEL.DEVICE).type, amp_dtype(cfg)
        )
    return SimpleTrainer(model, data_loader, optimizer)


class Trainer(DefaultTrainer):
    """detectron2's DefaultTrainer with PAVE-Net's parts, and a checkpoint of the whole training state.

    The parts are built here from detectron2's public API rather than by `DefaultTrainer.__init__`, which
    builds a CUDA-only DDP wrapper, AMP trainer and checkpointer by fixed names: `build_ddp_model` (CPU
    gloo training), `build_train_loop` (bf16 AMP on the CPU) and `PAVENetCheckpointer` (weights_only-safe
    loading, atomic saving, MODEL.PAVENET.WEIGHTS_MISMATCH). Every other DefaultTrainer method (hooks,
    `train`, `test`, `resume_or_load`, `auto_scale_workers`) is detectron2's own.

    Checkpoints carry the model, the scheduler and hooks (detectron2), the iteration, the inner loop's
    state (optimizer, AMP GradScaler) under `_trainer` as detectron2 main saves it (v0.6 saves neither),
    the Python / NumPy / torch RNG states and, with EMA, `model_ema`. With `DATALOADER.NUM_WORKERS == 0` a
    resumed run also replays the data stream to where it stopped, so it reaches the same weights as an
    uninterrupted run; with worker processes the resumed run reads the sampler's stream from its start
    again (the same stream for a fixed SEED, a new one for SEED < 0), so its data order differs from an
    uninterrupted run's.
    """

    def __init__(self, cfg):
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        self._rng_to_restore = None
        decay = cfg.MODEL.PAVENET.EMA_DECAY
        # 0 = off; any other value outside (0, 1) is an error naming the key. Before build_hooks.
        self.model_ema = ModelEMA(decay) if decay != 0 else None

        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = build_ddp_model(cfg, model)
        self._trainer = build_train_loop(cfg, model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = PAVENetCheckpointer(
            model,
            cfg.OUTPUT_DIR,
            trainer=weakref.proxy(self),
            weights_mismatch=cfg.MODEL.PAVENET.WEIGHTS_MISMATCH,
        )
        if self.model_ema is not None:
            self.checkpointer.add_checkpointable("model_ema", self.model_ema)
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    def build_hooks(self):
        ret = super().build_hooks()
        if self.model_ema is not None:
            # First, so that the checkpointer and the evaluation see this step's average.
            ret.insert(0, EMAHook(self.model_ema))
            ret = [
                hooks.EvalHook(self.cfg.TEST.EVAL_PERIOD, self._test_with_evaluation_weights)
                if isinstance(h, hooks.EvalHook)
                else h
                for h in ret
            ]
        return ret

    def evaluation_weights(self):
        """Context manager: within it `self.model` holds the weights that evaluations and the final checkpoint's
        users get, i.e. the EMA when MODEL.PAVENET.EMA_DECAY > 0 (engine/ema.py), else the trained weights."""
        if self.model_ema is None:
            return contextlib.nullcontext(self.model)
        return self.model_ema.swapped_into(self.model)

    def _test_with_evaluation_weights(self):
        with self.evaluation_weights():
            self._last_eval_results = self.test(self.cfg, self.model)
        return self._last_eval_results

    def state_dict(self):
        ret = TrainerBase.state_dict(self)  # iteration and hooks, on both detectron2 versions
        ret["_trainer"] = self._trainer.state_dict()  # optimizer and, with fp16 AMP, the GradScaler
        ret["rng"] = _rng_state()
        return ret

    def load_state_dict(self, state_dict):
        TrainerBase.load_state_dict(self, state_dict)
        if "_trainer" in state_dict:
            self._trainer.load_state_dict(state_dict["_trainer"])
        elif (
            "optimizer" in state_dict
        ):  # checkpoints written before the inner loop's state was saved whole
            self._trainer.optimizer.load_state_dict(state_dict["optimizer"])
        self._rng_to_restore = state_dict.get("rng")

    def resume_or_load(self, resume=True):
        super().resume_or_load(resume=resume)
        if not (resume and self.start_iter > 0):
            return
        if self.cfg.DATALOADER.NUM_WORKERS == 0:
            # Replay the (deterministic, seeded) data stream up to the checkpoint, then restore the RNGs.
            data_iter = self._trainer._data_loader_iter
            for _ in range(self.start_iter):
                next(data_iter)
        if self._rng_to_restore is not None:
            _set_rng_state(self._rng_to_restore)
            self._rng_to_restore = None

    @classmethod
    def build_train_loader(cls, cfg):
        return build_pavenet_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        """TEST.POSETRACK.VIDEO_MODE "stream": one video per batch (dataset dicts, for `VideoInference`);
        "clips": one mapped clip per batch (for the model's forward)."""
        if video_mode(cfg) == "stream":
            return build_pavenet_video_test_loader(cfg, dataset_name)
        return build_pavenet_test_loader(cfg, dataset_name)

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """DefaultTrainer.test per dataset; in "stream" mode the model runs through `VideoInference`
        (cached per-frame encodings, track ids with TEST.POSETRACK.EVAL_TRACKING)."""
        mode = video_mode(cfg)
        if mode == "clips" and cfg.TEST.POSETRACK.EVAL_TRACKING:
            logging.getLogger(__name__).warning(
                "TEST.POSETRACK.EVAL_TRACKING needs TEST.POSETRACK.VIDEO_MODE 'stream' (clips carry no track "
                "ids): evaluating AP only"
            )
        if mode == "clips" or len(cfg.DATASETS.TEST) == 0:
            return super().test(cfg, model, evaluators)
        if isinstance(evaluators, DatasetEvaluator):
            evaluators = [evaluators]
        results = OrderedDict()
        for idx, name in enumerate(cfg.DATASETS.TEST):
            # One dataset at a time: the tracker's OKS sigmas come from the dataset's metadata.
            single = cfg.clone()
            single.defrost()
            single.DATASETS.TEST = (name,)
            wrapped = VideoInference.from_config(cfg, model, name)
            res = super().test(single, wrapped, None if evaluators is None else [evaluators[idx]])
            results[name] = res
        if len(results) == 1:
            results = list(results.values())[0]
        return results

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_pavenet_optimizer(cfg, model)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type", None)
        if evaluator_type == "posetrack":
            thresh = cfg.TEST.POSETRACK.JOINT_SCORE_THRESH
            return PoseTrackEvaluator(
                dataset_name,
                output_dir=output_folder,
                eval_tracking=cfg.TEST.POSETRACK.EVAL_TRACKING,
                joint_score_thresh=thresh if thresh > 0 else None,
            )
        if evaluator_type == "coco":
            # The fast COCO evaluator needs detectron2's compiled ops; the pycocotools one does not.
            return COCOEvaluator(
                dataset_name,
                tasks=("keypoints",),
                distributed=True,
                output_dir=output_folder,
                use_fast_impl=False,
                kpt_oks_sigmas=cfg.TEST.KEYPOINT_OKS_SIGMAS,
            )
        raise NotImplementedError(
            f"no evaluator for dataset {dataset_name!r} with evaluator_type={evaluator_type!r}; "
            "PAVE-Net supports 'posetrack' and 'coco'"
        )
