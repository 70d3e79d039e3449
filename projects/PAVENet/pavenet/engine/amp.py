"""Mixed-precision training on CPU and CUDA (`SOLVER.AMP.ENABLED`).

detectron2 v0.6's `AMPTrainer` asserts CUDA and always scales with a CUDA GradScaler. `AMPTrainer` here
runs the forward under `torch.autocast` of the model's device type:

* CPU: bfloat16, no scaler (bf16 has float32's exponent range, so gradients do not underflow).
* CUDA: float16 with a `GradScaler` (the default), or bfloat16 without one.

What autocast must not touch stays float32 explicitly: the deformable-attention sampling
(`ms_deform_attn_core`) and the matching / RLE losses (`PAVENet.losses`).
"""

import time

import torch
from detectron2.engine import SimpleTrainer

__all__ = ["AMP_DTYPES", "amp_dtype", "AMPTrainer"]

AMP_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def amp_dtype(cfg) -> torch.dtype:
    """SOLVER.AMP.DTYPE ("auto" | "float16" | "bfloat16") -> the autocast dtype for MODEL.DEVICE."""
    name = cfg.SOLVER.AMP.DTYPE
    device_type = torch.device(cfg.MODEL.DEVICE).type
    if name == "auto":
        return torch.float16 if device_type == "cuda" else torch.bfloat16
    if name not in AMP_DTYPES:
        raise ValueError(f"SOLVER.AMP.DTYPE must be 'auto', 'float16' or 'bfloat16', got {name!r}")
    if device_type == "cpu" and name == "float16":
        raise ValueError(
            "SOLVER.AMP.DTYPE='float16' is CUDA-only; use 'bfloat16' (or 'auto') on the CPU"
        )
    return AMP_DTYPES[name]


class AMPTrainer(SimpleTrainer):
    """SimpleTrainer with the forward under autocast(device_type, dtype); a GradScaler for float16 only."""

    def __init__(
        self,
        model,
        data_loader,
        optimizer,
        device_type: str = "cpu",
        dtype: torch.dtype = torch.bfloat16,
    ):
        super().__init__(model, data_loader, optimizer)
        if device_type == "cpu" and dtype != torch.bfloat16:
            raise ValueError(f"CPU autocast trains in bfloat16 only, got {dtype}")
        self.device_type, self.dtype = device_type, dtype
        # float16's 5-bit exponent underflows small gradients: scale the loss; bfloat16 does not need it.
        self.grad_scaler = torch.amp.GradScaler(device_type) if dtype == torch.float16 else None

    def run_step(self):
        assert self.model.training, "[AMPTrainer] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start
        with torch.autocast(self.device_type, dtype=self.dtype):
            loss_dict = self.model(data)
            if isinstance(loss_dict, torch.Tensor):
                loss_dict = {"total_loss": loss_dict}
            losses = sum(loss_dict.values())
        self.optimizer.zero_grad()
        if self.grad_scaler is None:
            losses.backward()
            self._write_metrics(loss_dict, data_time)
            self.optimizer.step()
            return
        self.grad_scaler.scale(losses).backward()
        self._write_metrics(loss_dict, data_time)
        # step() unscales first, so the full-model gradient clipping inside optimizer.step sees true norms.
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()

    def state_dict(self):
        ret = super().state_dict()
        if self.grad_scaler is not None:
            ret["grad_scaler"] = self.grad_scaler.state_dict()
        return ret

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        if self.grad_scaler is not None and "grad_scaler" in state_dict:
            self.grad_scaler.load_state_dict(state_dict["grad_scaler"])
