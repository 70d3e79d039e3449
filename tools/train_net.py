#!/usr/bin/env python
"""Train or evaluate PAVE-Net: a thin entry point over `pavenet.engine` and detectron2's `launch`.

  python tools/train_net.py --config-file configs/posetrack17/pavenet_r50_3f_pt17.yaml --num-gpus 8
  python tools/train_net.py --config-file CFG --eval-only MODEL.WEIGHTS model.pth
  python tools/train_net.py --config-file CFG --resume        # continue from OUTPUT_DIR/last_checkpoint

`SOLVER.IMS_PER_BATCH` counts clips (of MODEL.PAVENET.NUM_FRAMES frames each) across all processes.
"""
from detectron2.engine import default_argument_parser, launch

from pavenet.checkpoint import CheckpointReadError
from pavenet.config import ConfigError, load_pavenet_config
from pavenet.engine import main
from pavenet.utils.d2compat import LaunchUnsupportedError, check_launch


def invoke_main() -> None:
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args)
    try:  # fail before spawning workers, with one line that names the bad file or key
        load_pavenet_config(args.config_file, args.opts)
        check_launch(args.num_gpus, args.num_machines)  # CPU workers: detectron2 main only
    except (ConfigError, LaunchUnsupportedError) as e:
        raise SystemExit(f"error: {e}")
    try:  # missing / unsafe / truncated weights, a bad last_checkpoint: one line naming the file
        launch(
            main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
        )
    except CheckpointReadError as e:
        raise SystemExit(f"error: {e}")


if __name__ == "__main__":
    invoke_main()
