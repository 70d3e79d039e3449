"""The programs on top of the library, each behind a thin script in tools/:

* `quickstart`: the `make demo` job (tools/quickstart.py): train, evaluate and render the tiny model on the
  synthetic videos;
* `demo`: the video demo (tools/demo.py): poses and track ids drawn on a user's video;
* `benchmark`: inference and training cost (tools/benchmark.py);
* `convert_official`: the official-checkpoint converter's command line (tools/convert_official_ckpt.py);
* `gpu_check`: the deformable-attention kernel against the golden outputs on a GPU (tools/gpu_check.py).

Nothing in the library (every other `pavenet` sub-package) imports from here.
"""
