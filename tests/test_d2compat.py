"""The differences between detectron2 v0.6 and main (pavenet.utils.d2compat), on whichever is installed."""

import os
import subprocess
import sys

import pytest
import torch

from pavenet.utils.cli_numbers import check_num_gpus, launch_runs_without_cuda
from pavenet.utils.d2compat import restore_pillow_linear

from conftest import REPO_ROOT


def _record_rank(path):
    from detectron2.utils import comm

    with open(f"{path}.{comm.get_rank()}", "w") as f:
        f.write(f"{comm.get_world_size()} {torch.distributed.get_backend()}")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU path of launch")
def test_installed_launch_runs_two_cpu_workers_or_is_refused_before_starting(tmp_path):
    from detectron2.engine import launch

    if not launch_runs_without_cuda():  # v0.6
        with pytest.raises(ValueError, match="--num-gpus 2"):
            check_num_gpus(2)
        return
    check_num_gpus(2)
    launch(_record_rank, 2, dist_url="auto", args=(str(tmp_path / "rank"),))
    assert sorted(p.read_text() for p in tmp_path.glob("rank.*")) == ["2 gloo", "2 gloo"]


def test_pillow_linear_alias_is_restored(monkeypatch):
    from PIL import Image

    monkeypatch.delattr(Image, "LINEAR", raising=False)
    restore_pillow_linear()
    assert Image.LINEAR == Image.BILINEAR


def test_the_package_never_imports_detectron2_model_zoo():
    # model_zoo imports pkg_resources (gone with setuptools >= 81) on v0.6 and main alike.
    code = (
        "import pkgutil, importlib, sys, pavenet\n"
        "for m in pkgutil.walk_packages(pavenet.__path__, 'pavenet.'): importlib.import_module(m.name)\n"
        "print(sorted(k for k in sys.modules if k.startswith('detectron2.model_zoo')))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "projects" / "PAVENet")},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"
