"""`setup(args)` and `main(args)` for tools/train_net.py (kept in the package so tests can drive them)."""

import logging

import detectron2.utils.comm as comm
from detectron2.engine import default_setup
from detectron2.evaluation import verify_results
from detectron2.utils.logger import setup_logger

from ..checkpoint import PAVENetCheckpointer
from ..config import frozen_config
from .trainer import Trainer


def setup(args):
    """Config from `args.config_file` + `args.opts`, frozen, with logging and the output dir set up."""
    if not args.config_file:
        raise ValueError("--config-file is required (e.g. configs/synthetic/pavenet_tiny.yaml)")
    cfg, device_warning = frozen_config(args.config_file, args.opts)
    default_setup(cfg, args)
    setup_logger(output=cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="pavenet")
    if device_warning:
        logging.getLogger("pavenet").warning(device_warning)
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        checkpointer = PAVENetCheckpointer(
            model, save_dir=cfg.OUTPUT_DIR, weights_mismatch=cfg.MODEL.PAVENET.WEIGHTS_MISMATCH
        )
        checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        res = Trainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, res)
        return res

    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()
