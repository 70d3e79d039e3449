"""Training hooks that detectron2 does not ship."""

from detectron2.engine import HookBase
from detectron2.utils import comm
from tqdm import tqdm


class ProgressBarHook(HookBase):
    """A tqdm bar over training iterations (main process only), showing the latest total loss."""

    def __init__(self, desc: str = "train"):
        self._desc = desc
        self._bar = None

    def before_train(self):
        if comm.is_main_process():
            self._bar = tqdm(
                total=self.trainer.max_iter,
                initial=self.trainer.start_iter,
                desc=self._desc,
                unit="it",
                dynamic_ncols=True,
            )

    def after_step(self):
        if self._bar is None:
            return
        self._bar.update(1)
        latest = self.trainer.storage.latest()
        if "total_loss" in latest:
            self._bar.set_postfix(loss=f"{latest['total_loss'][0]:.3f}", refresh=False)

    def after_train(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
