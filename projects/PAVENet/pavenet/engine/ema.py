"""An exponential moving average (EMA) of the trained weights, evaluated and shipped instead of the last
iterate (`MODEL.PAVENET.EMA_DECAY`, off in the official recipe; docs/MODEL.md).

Why: the one-to-one scores that make PAVE-Net NMS-free move a lot from one step to the next late in a
short schedule (which copy of a person wins the matching flips), so the last iterate's duplicates depend
on where training happened to stop. The average over the last ~1 / (1 - decay) steps is a smoother model.
Measured on the CPU demo (docs/BENCHMARKS.md) it is well ahead mid-schedule but not after the LR step, so
the demo and the recipes leave it off.

How it fits the Trainer:
* `EMAHook` updates the average after every optimizer step, before the checkpointer and the evaluation
  hooks, starting from the weights after the first step. Parameters and float buffers (BatchNorm
  statistics) are averaged, integer buffers copied. The trained model itself is never changed, so
  training with and without the EMA follows the same trajectory.
* The Trainer registers the average as the checkpointable "model_ema": every checkpoint holds the raw
  weights ("model", for an exact resume) and the average ("model_ema"); `--resume` restores both.
* Evaluation during training runs with the average swapped in (`ModelEMA.swapped_into`), then the raw
  weights are put back bit for bit.
* `PAVENetCheckpointer` loads a checkpoint's "model_ema" in place of its "model" wherever the average is
  not restored separately (`--eval-only`, the demo and predictor, MODEL.WEIGHTS for a new run), so what is
  evaluated at the end of training is what a user loads.
"""

import contextlib
from typing import Dict

import torch
from detectron2.engine import HookBase

from ..utils.ddp import unwrap_model

__all__ = ["ModelEMA", "EMAHook"]


class ModelEMA:
    """ema <- decay * ema + (1 - decay) * weights, for every float tensor of the model's state_dict.

    Args:
        decay: in (0, 1); the average spans about 1 / (1 - decay) steps (0.995: ~200).
    """

    def __init__(self, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(
                f"MODEL.PAVENET.EMA_DECAY = {decay!r}: expected a value in (0, 1), or 0 for no EMA"
            )
        self.decay = float(decay)
        self.num_updates = 0
        self.weights: Dict[str, torch.Tensor] = {}
        self._after_load = False

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """One step of the average with `model`'s current state (the first call copies it)."""
        state = unwrap_model(model).state_dict()
        if not self.weights:
            self.weights = {k: v.detach().clone() for k, v in state.items()}
        else:
            if self._after_load:  # a checkpoint is read onto the CPU; the model may live on a GPU
                self.weights = {k: w.to(state[k].device) for k, w in self.weights.items()}
                self._after_load = False
            for k, v in state.items():
                if v.dtype.is_floating_point:
                    self.weights[k].mul_(self.decay).add_(v.detach(), alpha=1.0 - self.decay)
                else:
                    self.weights[k].copy_(v)
        self.num_updates += 1

    @contextlib.contextmanager
    def swapped_into(self, model: torch.nn.Module):
        """Within the block `model` holds the average; afterwards its own weights, restored exactly.
        Before the first update there is no average and `model` is left as it is."""
        if not self.weights:
            yield model
            return
        inner = unwrap_model(model)
        own = {k: v.detach().clone() for k, v in inner.state_dict().items()}
        inner.load_state_dict(self.weights)
        try:
            yield model
        finally:
            inner.load_state_dict(own)

    # checkpointable (fvcore's Checkpointer calls these)
    def state_dict(self) -> Dict:
        return {"decay": self.decay, "num_updates": self.num_updates, "weights": self.weights}

    def load_state_dict(self, state: Dict) -> None:
        self.num_updates = int(state["num_updates"])
        self.weights = {k: v.clone() for k, v in state["weights"].items()}
        self._after_load = True


class EMAHook(HookBase):
    """Updates `ema` with the trainer's model after every step (see the module docstring)."""

    def __init__(self, ema: ModelEMA):
        self.ema = ema

    def after_step(self):
        self.ema.update(self.trainer.model)
