#!/usr/bin/env python
"""Train or evaluate PAVE-Net: a thin entry point over `pavenet.engine` and detectron2's `launch`.

  python tools/train_net.py --config-file configs/posetrack17/pavenet_r50_3f_pt17.yaml --num-gpus 8
  python tools/train_net.py --config-file CFG --eval-only MODEL.WEIGHTS model.pth
  python tools/train_net.py --config-file CFG --resume        # continue from OUTPUT_DIR/last_checkpoint

`SOLVER.IMS_PER_BATCH` counts clips (of MODEL.PAVENET.NUM_FRAMES frames each) across all processes.
"""

import pavenet  # noqa: F401  (first: filters two dependency warnings before detectron2 loads)

# isort: split
from detectron2.engine import default_argument_parser, launch

from pavenet.checkpoint import CheckpointReadError
from pavenet.config import ConfigError, load_pavenet_config
from pavenet.data.posetrack_files import PoseTrackFormatError
from pavenet.engine import main
from pavenet.utils.cli_numbers import check_num_gpus


def invoke_main() -> None:
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args)
    try:  # fail before spawning workers, with one line that names the bad file, key or option
        load_pavenet_config(args.config_file, args.opts)
        check_num_gpus(args.num_gpus, args.num_machines)
    except (ConfigError, ValueError) as e:
        raise SystemExit(f"error: {e}")
    # Missing / unsafe / truncated weights, a bad last_checkpoint, a malformed dataset or GT file: one line
    # naming the file.
    try:
        launch(
            main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
        )
    except (CheckpointReadError, PoseTrackFormatError) as e:
        raise SystemExit(f"error: {e}")


if __name__ == "__main__":
    invoke_main()
