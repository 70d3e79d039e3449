"""End to end on tiny settings: multi-process (gloo) training equals single-process training with the same
total batch, and `--eval-only` runs on the real PoseTrack18 sample and prints the table."""

import json
import os
import uuid

import numpy as np
import pytest
import torch

from conftest import TINY_CONFIG, load_tiny_cfg, run_gloo_workers

TINY = str(TINY_CONFIG)


def _tiny_cfg(out_dir, max_iter, synthetic_root):
    from pavenet.data.datasets.posetrack import register_posetrack

    name = "e2e_synth_train"
    if name not in __import__("detectron2.data", fromlist=["DatasetCatalog"]).DatasetCatalog.list():
        register_posetrack(
            name, os.path.join(synthetic_root, "annotations", "train"), synthetic_root
        )
    cfg = load_tiny_cfg(
        *[
            # Per-rank batch statistics and per-process augmentation draws would differ between the two
            # set-ups; the equivalence under test is the gradient/loss normalisation across ranks.
            "MODEL.RESNETS.NORM",
            "FrozenBN",
            "INPUT.RANDOM_FLIP",
            "none",
            "INPUT.PAVENET.ROTATION",
            0.0,
            "INPUT.PAVENET.COLOR_AUG",
            False,
            "DATASETS.TRAIN",
            (name,),
            "DATASETS.TEST",
            (),
            "DATALOADER.NUM_WORKERS",
            0,
            "SOLVER.IMS_PER_BATCH",
            4,
            # SGD keeps weight updates linear in the gradients; Adam would turn float noise in
            # exactly-zero gradients (e.g. attention key biases) into full-size steps.
            "SOLVER.OPTIMIZER",
            "SGD",
            "SOLVER.BASE_LR",
            0.01,
            "SOLVER.MAX_ITER",
            max_iter,
            "SOLVER.CHECKPOINT_PERIOD",
            1000,
            "SEED",
            7,
            "OUTPUT_DIR",
            str(out_dir),
        ]
    )
    return cfg


def _train_and_record(cfg):
    """Train; return the total loss per iteration (reduced over ranks by detectron2) and the weights."""
    import detectron2.utils.comm as comm
    from detectron2.engine import HookBase
    from detectron2.utils.env import seed_all_rng

    from pavenet.engine import Trainer

    losses = []

    class Record(HookBase):
        def after_step(self):
            if comm.is_main_process():  # detectron2 reduces the loss dict over ranks onto rank 0
                losses.append(self.trainer.storage.history("total_loss").latest())

    # What default_setup does in tools/train_net.py: seed every RNG from SEED (+ rank).
    seed_all_rng(cfg.SEED + comm.get_rank())
    trainer = Trainer(cfg)
    trainer.register_hooks([Record()])
    trainer.resume_or_load(resume=False)
    trainer.train()
    model = trainer.model.module if hasattr(trainer.model, "module") else trainer.model
    return losses, {k: v.detach().clone() for k, v in model.state_dict().items()}


def _worker(rank, out_dir, synthetic_root, result_file):
    losses, state = _train_and_record(_tiny_cfg(out_dir, 3, synthetic_root))
    if rank == 0:
        torch.save({"losses": losses, "state": state}, result_file)


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    from pavenet.data.synthetic import generate_synthetic_posetrack

    root = str(tmp_path_factory.mktemp("synthetic"))
    return generate_synthetic_posetrack(root, num_train=2, num_val=1, num_frames=8)


def test_two_gloo_processes_match_one_process(tmp_path, synthetic_root):
    single_losses, single_state = _train_and_record(
        _tiny_cfg(tmp_path / "single", 3, synthetic_root)
    )

    result = tmp_path / "ddp.pth"
    run_gloo_workers(_worker, 2, tmp_path, str(tmp_path / "ddp"), synthetic_root, str(result))
    ddp = torch.load(result, weights_only=True)
    assert len(ddp["losses"]) == len(single_losses) == 3
    assert ddp["losses"] == pytest.approx(single_losses, rel=1e-4, abs=1e-4)
    for name, w in single_state.items():
        torch.testing.assert_close(
            ddp["state"][name], w, rtol=1e-4, atol=1e-5, msg=f"{name} differs"
        )


def test_eval_only_on_the_real_posetrack18_sample(tmp_path, sample_dir, capsys):
    from detectron2.engine import default_argument_parser

    from pavenet.data.datasets.posetrack import register_posetrack
    from pavenet.engine import main

    name = f"pt18_sample_{uuid.uuid4().hex[:6]}"
    register_posetrack(name, str(sample_dir / "annotations" / "val"), str(sample_dir))
    args = default_argument_parser().parse_args(
        [
            "--config-file",
            TINY,
            "--eval-only",  # MODEL.DEVICE stays detectron2's "cuda": falls back to cpu
            "DATASETS.TEST",
            f"('{name}',)",
            "OUTPUT_DIR",
            str(tmp_path),
            "DATALOADER.NUM_WORKERS",
            "0",
        ]
    )
    results = main(args)
    ap = results["posetrack"]
    assert {"AP", "AP-Head", "AP-Ankle"} <= set(ap)
    assert 0.0 <= ap["AP"] <= 100.0
    captured = capsys.readouterr()
    table = captured.out + captured.err
    assert all(
        col in table
        for col in ("Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Mean")
    ), "the AP table was not printed"
    pred_dir = tmp_path / "inference" / name / "posetrack_predictions"
    files = sorted(p.name for p in pred_dir.glob("*.json"))
    assert files == ["003418_mpii_test.json", "009473_mpii_test.json"]
    with open(pred_dir / files[0]) as f:
        seq = json.load(f)
    assert seq["annotations"], "no predictions written for the labelled frame"
    assert all(len(a["keypoints"]) == 17 * 3 for a in seq["annotations"])


def test_tiny_pavenet_resume_reaches_the_same_weights(tmp_path, synthetic_root):
    """Stop after a checkpoint, resume with --resume semantics: same final weights as a straight run,
    with the clip augmentations (flip, rotation, colour) switched on, and AdamW's per-Parameter states of
    the tied joint offset biases restored."""
    from pavenet.engine import Trainer

    def cfg_for(out, max_iter):
        cfg = _tiny_cfg(out, max_iter, synthetic_root)
        cfg.merge_from_list(
            [
                "INPUT.RANDOM_FLIP",
                "horizontal",
                "INPUT.PAVENET.ROTATION",
                10.0,
                "INPUT.PAVENET.COLOR_AUG",
                True,
                "MODEL.RESNETS.NORM",
                "BN",
                "SOLVER.OPTIMIZER",
                "ADAMW",
                "SOLVER.BASE_LR",
                1e-3,
                "SOLVER.CHECKPOINT_PERIOD",
                2,
            ]
        )
        return cfg

    torch.set_num_threads(
        1
    )  # multi-threaded CPU kernels may reduce in a different order run to run
    _, straight = _train_and_record(cfg_for(tmp_path / "straight", 4))
    _train_and_record(
        cfg_for(tmp_path / "resumed", 2)
    )  # "killed" after its checkpoint at iteration 2
    torch.manual_seed(99)  # a fresh process state must not matter
    np.random.seed(99)
    trainer = Trainer(cfg_for(tmp_path / "resumed", 4))
    trainer.resume_or_load(resume=True)
    assert trainer.start_iter == 2
    # The joint attention's per-frame offset biases (F Parameters over one storage, as official) still
    # share it after the checkpoint load, each with its own restored AdamW state.
    for layer in trainer.model.head.transformer.refine_decoder.layers:
        biases = [m.bias for m in layer.attentions[1].offset_layers()]
        assert len({b.data_ptr() for b in biases}) == 1 and len({id(b) for b in biases}) == len(
            biases
        )
        assert all(trainer.optimizer.state[b]["step"] == 2 for b in biases)
    trainer.train()
    for name, w in trainer.model.state_dict().items():
        assert torch.equal(w, straight[name]), f"{name} differs after resume"
