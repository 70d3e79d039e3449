"""MODEL.PAVENET.EMA_DECAY (pavenet/engine/ema.py): the weight average's formula, that it leaves training
untouched, that evaluations during training and every weights-only load get it, and that --resume restores
the raw weights and the average both."""

import os

import pytest
import torch
from torch import nn

from pavenet.engine.ema import ModelEMA

from conftest import load_tiny_cfg


def test_average_follows_the_formula_and_the_model_gets_its_weights_back():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = ModelEMA(0.75)
    history = []
    for step in range(4):
        with torch.no_grad():
            model[0].weight.fill_(float(step + 1))
        model.train()(torch.randn(5, 3))  # moves the BatchNorm statistics and its integer counter
        history.append({k: v.clone() for k, v in model.state_dict().items()})
        ema.update(model)
    expected = history[0]["0.weight"]  # starts from the first update's weights
    for state in history[1:]:
        expected = 0.75 * expected + 0.25 * state["0.weight"]
    torch.testing.assert_close(ema.weights["0.weight"], expected)
    by_hand = (
        (1 * 0.75 + 0.25 * 2) * 0.75 + 0.25 * 3
    ) * 0.75 + 0.25 * 4  # weights filled with 1, 2, 3, 4
    assert ema.weights["0.weight"][0, 0].item() == pytest.approx(by_hand)
    mean = history[0]["1.running_mean"]
    for state in history[1:]:
        mean = 0.75 * mean + 0.25 * state["1.running_mean"]
    torch.testing.assert_close(ema.weights["1.running_mean"], mean)
    assert ema.weights["1.num_batches_tracked"].item() == 4  # integers are copied, not averaged
    assert ema.num_updates == 4

    own = {k: v.clone() for k, v in model.state_dict().items()}
    with ema.swapped_into(model) as m:
        assert m is model and torch.equal(model[0].weight, ema.weights["0.weight"])
    for k, v in model.state_dict().items():
        assert torch.equal(v, own[k]), k

    copy = ModelEMA(0.75)
    copy.load_state_dict(ema.state_dict())
    assert copy.num_updates == 4 and all(
        torch.equal(copy.weights[k], v) for k, v in ema.weights.items()
    )
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="EMA_DECAY"):
            ModelEMA(bad)


# ---------------------------------------------------------------- in the Trainer
@pytest.fixture(scope="module")
def train_name(tmp_path_factory):
    from detectron2.data import DatasetCatalog

    from pavenet.data.datasets.posetrack import register_posetrack
    from pavenet.data.synthetic import generate_synthetic_posetrack

    root = generate_synthetic_posetrack(
        str(tmp_path_factory.mktemp("synthetic")), num_train=2, num_val=1, num_frames=8
    )
    name = "ema_synth_train"
    if name not in DatasetCatalog.list():
        register_posetrack(name, os.path.join(root, "annotations", "train"), root)
    return name


def _cfg(out, max_iter, train_name, decay, eval_period=0):
    return load_tiny_cfg(
        *[
            "DATASETS.TRAIN",
            f"('{train_name}',)",
            "DATASETS.TEST",
            "()",
            "DATALOADER.NUM_WORKERS",
            0,
            "SOLVER.IMS_PER_BATCH",
            2,
            "SOLVER.MAX_ITER",
            max_iter,
            "SOLVER.CHECKPOINT_PERIOD",
            2,
            "TEST.EVAL_PERIOD",
            eval_period,
            "MODEL.PAVENET.EMA_DECAY",
            decay,
            "SEED",
            3,
            "OUTPUT_DIR",
            str(out),
        ]
    )


def _train(cfg, resume=False):
    """Train; returns the trainer and the raw state after every step."""
    from detectron2.engine import HookBase
    from detectron2.utils.env import seed_all_rng

    from pavenet.engine import Trainer

    states = []

    class Record(HookBase):
        def after_step(self):
            states.append(
                {k: v.detach().clone() for k, v in self.trainer.model.state_dict().items()}
            )

    seed_all_rng(cfg.SEED)
    trainer = Trainer(cfg)
    trainer.register_hooks([Record()])
    trainer.resume_or_load(resume=resume)
    trainer.train()
    return trainer, states


def test_trainer_averages_without_changing_training_evaluates_the_average_and_resumes(
    tmp_path, train_name, monkeypatch
):
    from pavenet.checkpoint import PAVENetCheckpointer
    from pavenet.engine import Trainer

    torch.set_num_threads(1)
    plain, plain_states = _train(_cfg(tmp_path / "plain", 4, train_name, 0.0))
    assert plain.model_ema is None

    evaluated = []

    def fake_test(cls, cfg, model, evaluators=None):  # what an evaluation during training is given
        evaluated.append({k: v.clone() for k, v in model.state_dict().items()})
        return {}

    monkeypatch.setattr(Trainer, "test", classmethod(fake_test))
    trainer, states = _train(_cfg(tmp_path / "ema", 4, train_name, 0.6, eval_period=2))
    # The average never feeds back: the trained weights are those of the run without it.
    for k, v in plain_states[-1].items():
        assert torch.equal(states[-1][k], v), k
    expected = {k: v.clone() for k, v in states[0].items()}
    averages = []
    for state in states[1:]:
        for k, v in state.items():
            expected[k] = 0.6 * expected[k] + 0.4 * v if v.dtype.is_floating_point else v.clone()
        averages.append({k: v.clone() for k, v in expected.items()})
    name = "head.query_embedding.weight"
    assert name in expected
    for k, v in expected.items():
        torch.testing.assert_close(trainer.model_ema.weights[k], v, rtol=1e-6, atol=1e-7, msg=k)
    assert not torch.allclose(
        expected[name], states[-1][name]
    )  # a real average, not the last weights
    # Evaluations at iterations 2 and 4 saw the average of that moment; the model got its weights back.
    assert len(evaluated) == 2
    for seen, avg in zip(evaluated, (averages[0], averages[2])):
        torch.testing.assert_close(seen[name], avg[name], rtol=1e-6, atol=1e-7)
    assert torch.equal(trainer.model.state_dict()[name], states[-1][name])

    # The final checkpoint holds both; a weights-only load (inference, MODEL.WEIGHTS) gets the average.
    final = str(tmp_path / "ema" / "model_final.pth")
    saved = torch.load(final, weights_only=True)
    assert torch.equal(saved["model"][name], states[-1][name])
    assert torch.equal(saved["model_ema"]["weights"][name], trainer.model_ema.weights[name])
    fresh = Trainer.build_model(trainer.cfg)
    PAVENetCheckpointer(fresh).resume_or_load(final, resume=False)
    assert torch.equal(fresh.state_dict()[name], trainer.model_ema.weights[name])

    # Resume from the iteration-2 checkpoint: the raw weights and the average continue where they were.
    monkeypatch.undo()
    _train(_cfg(tmp_path / "resumed", 2, train_name, 0.6))
    resumed, _ = _train(_cfg(tmp_path / "resumed", 4, train_name, 0.6), resume=True)
    assert resumed.start_iter == 2 and resumed.model_ema.num_updates == 4
    for k, v in trainer.model_ema.weights.items():
        assert torch.equal(resumed.model_ema.weights[k], v), k
        assert torch.equal(resumed.model.state_dict()[k], states[-1][k]), k
