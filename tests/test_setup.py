"""The environment and the project skeleton: detectron2 imports, named compiled-op errors, configs,
and a trivially registered meta-architecture that trains and resumes under the Trainer on CPU."""

import importlib
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import BASE_CONFIG, REPO_ROOT

V06_KEYS_FILE = Path(__file__).parent / "data" / "detectron2_v0.6_config_keys.txt"


@pytest.mark.parametrize(
    "module",
    [
        "detectron2.engine",
        "detectron2.data",
        "detectron2.modeling",
        "detectron2.evaluation",
        "detectron2.utils.visualizer",
        "detectron2.utils.video_visualizer",
        "detectron2.checkpoint",
    ],
)
def test_detectron2_modules_import(module):
    importlib.import_module(module)


def test_compiled_op_raises_named_error():
    from detectron2 import _C

    if getattr(_C, "__file__", "").endswith((".so", ".pyd")):
        pytest.skip("a compiled detectron2 is installed; the stand-in is not in use")
    from detectron2.layers.rotated_boxes import pairwise_iou_rotated

    boxes = torch.tensor([[10.0, 10.0, 4.0, 4.0, 0.0]])
    with pytest.raises(RuntimeError, match="box_iou_rotated.*docs/INSTALL.md"):
        pairwise_iou_rotated(boxes, boxes)


def _leaf_keys(cfg, prefix=""):
    for k, v in cfg.items():
        if hasattr(v, "items"):
            yield from _leaf_keys(v, prefix + k + ".")
        else:
            yield prefix + k


def _yaml_leaf_keys(path):
    import yaml

    def walk(d, prefix=""):
        for k, v in d.items():
            if k == "_BASE_":
                continue
            if isinstance(v, dict):
                yield from walk(v, prefix + k + ".")
            else:
                yield prefix + k

    with open(path) as f:
        return list(walk(yaml.safe_load(f) or {}))


CONFIGS = sorted((REPO_ROOT / "configs").rglob("*.yaml"))


def test_there_are_configs():
    assert CONFIGS, "no YAML under configs/"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_config_merges_and_uses_only_v06_keys(path):
    from detectron2.config import get_cfg

    from pavenet import add_pavenet_config

    base = get_cfg()
    pavenet_keys = set(_leaf_keys(add_pavenet_config(get_cfg()))) - set(_leaf_keys(base))
    v06_keys = {
        l.strip()
        for l in V06_KEYS_FILE.read_text().splitlines()
        if l.strip() and not l.startswith("#")
    }
    allowed = v06_keys | pavenet_keys
    unknown = [k for k in _yaml_leaf_keys(path) if k not in allowed]
    assert not unknown, (
        f"{path} uses keys that detectron2 v0.6 + add_pavenet_config lack: {unknown}"
    )

    cfg = add_pavenet_config(get_cfg())
    cfg.merge_from_file(str(path))  # raises on unknown keys and bad _BASE_ chains
    assert cfg.MODEL.META_ARCHITECTURE == "PAVENet"


def test_bad_config_file_or_override_names_itself(tmp_path):
    from pavenet.config import ConfigError, load_pavenet_config

    tiny = str(REPO_ROOT / "configs" / "synthetic" / "pavenet_tiny.yaml")
    cfg = load_pavenet_config(tiny, ["SOLVER.MAX_ITER", 7])
    assert cfg.SOLVER.MAX_ITER == 7 and cfg.MODEL.PAVENET.HIDDEN_DIM == 64
    unknown = tmp_path / "unknown_key.yaml"
    unknown.write_text("MODEL:\n  PAVENET:\n    NOT_A_KEY: 1\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("MODEL: [unclosed\n")
    for path, needle in (
        (unknown, "NOT_A_KEY"),
        (broken, "broken.yaml"),
        (tmp_path / "none.yaml", "not found"),
    ):
        with pytest.raises(ConfigError, match=needle) as e:
            load_pavenet_config(str(path))
        assert str(path) in str(e.value)
    with pytest.raises(ConfigError, match="SOLVER.MAX_ITER"):
        load_pavenet_config(tiny, ["SOLVER.MAX_ITER", "abc"])


# --- a trivial meta-architecture under the package Trainer ------------------------------------------
from detectron2.modeling import META_ARCH_REGISTRY  # noqa: E402

if "_PAVENetSmokeArch" not in META_ARCH_REGISTRY._obj_map:

    @META_ARCH_REGISTRY.register()
    class _PAVENetSmokeArch(nn.Module):
        """y = w.x with a backbone-named and a sampling_offsets-named parameter (for the lr groups)."""

        def __init__(self, cfg):
            super().__init__()
            self.backbone = nn.Linear(4, 4)
            self.sampling_offsets = nn.Linear(4, 1)

        def forward(self, batched_inputs):
            x = torch.stack([b["x"] for b in batched_inputs])
            y = torch.stack([b["y"] for b in batched_inputs])
            return {
                "loss_mse": ((self.sampling_offsets(self.backbone(x)).squeeze(1) - y) ** 2).mean()
            }


def _smoke_loader():
    g = torch.Generator().manual_seed(0)
    while True:
        yield [
            {"x": torch.randn(4, generator=g), "y": torch.randn((), generator=g)} for _ in range(2)
        ]


def _smoke_cfg(out_dir, max_iter):
    from detectron2.config import get_cfg

    from pavenet import add_pavenet_config

    cfg = add_pavenet_config(get_cfg())
    cfg.merge_from_file(str(BASE_CONFIG))
    cfg.MODEL.META_ARCHITECTURE = "_PAVENetSmokeArch"
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    cfg.SOLVER.MAX_ITER = max_iter
    cfg.SOLVER.BASE_LR = 1e-2
    cfg.SOLVER.STEPS = ()
    cfg.SOLVER.CHECKPOINT_PERIOD = 2
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.TEST.EVAL_PERIOD = 0
    cfg.DATASETS.TRAIN = ()
    cfg.DATASETS.TEST = ()
    cfg.OUTPUT_DIR = str(out_dir)
    return cfg


def _smoke_trainer(cfg):
    from pavenet.engine import Trainer

    class SmokeTrainer(Trainer):
        @classmethod
        def build_train_loader(cls, cfg):
            return _smoke_loader()

    return SmokeTrainer(cfg)


def test_trivial_meta_arch_trains_and_resumes(tmp_path):
    cfg = _smoke_cfg(tmp_path, max_iter=2)
    trainer = _smoke_trainer(cfg)
    groups = {name: g["lr"] for g in trainer.optimizer.param_groups for name in g["names"]}
    assert groups["backbone.weight"] == pytest.approx(
        cfg.SOLVER.BASE_LR * cfg.SOLVER.BACKBONE_MULTIPLIER
    )
    assert groups["sampling_offsets.weight"] == pytest.approx(
        cfg.SOLVER.BASE_LR * cfg.SOLVER.SAMPLING_OFFSET_MULTIPLIER
    )
    before = trainer.model.backbone.weight.detach().clone()
    trainer.resume_or_load(resume=False)
    trainer.train()
    assert trainer.iter == 2  # detectron2 leaves iter at max_iter after the loop
    assert not torch.equal(before, trainer.model.backbone.weight), "two iterations changed nothing"
    ckpt = tmp_path / "model_final.pth"
    assert ckpt.is_file()
    # torch >= 2.6 defaults to weights_only loading: our checkpoints must pass it as they are.
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert {"model", "iteration"} <= set(state)

    # Resume into a fresh trainer with a longer schedule: weights, optimizer and iteration are restored.
    cfg2 = _smoke_cfg(tmp_path, max_iter=4)
    trainer2 = _smoke_trainer(cfg2)
    trainer2.resume_or_load(resume=True)
    assert trainer2.start_iter == 2
    assert torch.equal(trainer2.model.backbone.weight, trainer.model.backbone.weight)
    assert trainer2.optimizer.state_dict()["state"], "optimizer state was not restored"
    trainer2.train()
    assert trainer2.iter == 4


class _Opaque:
    """A class that weights_only loading refuses."""


def test_checkpointer_rejects_pickled_objects_with_named_error(tmp_path):
    from pavenet.checkpoint import CheckpointReadError, PAVENetCheckpointer, UnsafeCheckpointError

    bad = tmp_path / "opaque.pth"
    torch.save({"model": {}, "extra": _Opaque()}, bad)
    ckpt = PAVENetCheckpointer(nn.Linear(1, 1))
    with pytest.raises(UnsafeCheckpointError, match="opaque.pth"):
        ckpt.load(str(bad))
    with pytest.raises(CheckpointReadError, match="missing.pth"):
        ckpt.load(str(tmp_path / "missing.pth"))


def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(tmp_path):
    """2 iterations + resume for 2 more == 4 straight iterations (optimizer, scheduler, data and RNG)."""
    torch.manual_seed(0)
    straight = _smoke_trainer(_smoke_cfg(tmp_path / "straight", max_iter=4))
    straight.resume_or_load(resume=False)
    straight.train()

    torch.manual_seed(0)
    first = _smoke_trainer(_smoke_cfg(tmp_path / "resumed", max_iter=2))
    first.resume_or_load(resume=False)
    first.train()
    torch.manual_seed(1234)  # a different process state must not matter after resume
    second = _smoke_trainer(_smoke_cfg(tmp_path / "resumed", max_iter=4))
    second.resume_or_load(resume=True)
    second.train()
    for (name, a), b in zip(
        straight.model.state_dict().items(), second.model.state_dict().values()
    ):
        assert torch.equal(a, b), f"{name} differs after resume"
