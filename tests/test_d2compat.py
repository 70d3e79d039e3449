"""pavenet.utils.d2compat: the differences between detectron2 v0.6 and main, on whichever is installed."""
import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO_ROOT
from pavenet.utils.d2compat import (LaunchUnsupportedError, check_launch, launch_starts_cpu_workers,
                                    restore_pillow_linear)


def _v06_worker(local_rank, main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, args):
    assert torch.cuda.is_available(), "cuda is not available. Please check your installation."
    torch.distributed.init_process_group(backend="NCCL", init_method=dist_url, world_size=world_size)


def _main_worker(local_rank, main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, args):
    has_gpu = torch.cuda.is_available()
    torch.distributed.init_process_group(backend="NCCL" if has_gpu else "GLOO", init_method=dist_url)


def test_cpu_workers_are_told_apart_by_the_worker_not_the_version():
    assert launch_starts_cpu_workers(_v06_worker) is False
    assert launch_starts_cpu_workers(_main_worker) is True
    assert launch_starts_cpu_workers(len) is None  # no Python source: unknown, never blocks


def test_several_cpu_processes_are_refused_on_v06_only(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(LaunchUnsupportedError, match=r"--num-gpus 2 .*v0\.6.*--num-gpus 1"):
        check_launch(2, worker=_v06_worker)
    check_launch(2, worker=_main_worker)
    check_launch(1, worker=_v06_worker)  # one process: launch calls the function directly
    with pytest.raises(LaunchUnsupportedError, match="--num-gpus must be >= 1"):
        check_launch(0)


def _record_rank(path):
    from detectron2.utils import comm

    with open(f"{path}.{comm.get_rank()}", "w") as f:
        f.write(f"{comm.get_world_size()} {torch.distributed.get_backend()}")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU path of launch")
def test_installed_launch_runs_two_cpu_workers_or_is_refused_before_starting(tmp_path):
    from detectron2.engine import launch

    if launch_starts_cpu_workers() is False:
        with pytest.raises(LaunchUnsupportedError, match="--num-gpus 2"):
            check_launch(2)
        return
    check_launch(2)
    launch(_record_rank, 2, dist_url="auto", args=(str(tmp_path / "rank"),))
    assert sorted(p.read_text() for p in tmp_path.glob("rank.*")) == ["2 gloo", "2 gloo"]


def test_train_net_names_the_option_on_v06_without_cuda(tmp_path):
    if torch.cuda.is_available() or launch_starts_cpu_workers() is not False:
        pytest.skip("detectron2 main or a CUDA machine: --num-gpus 2 is allowed here")
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "train_net.py"), "--config-file",
         str(REPO_ROOT / "configs" / "synthetic" / "pavenet_tiny.yaml"), "--num-gpus", "2"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    assert proc.returncode != 0
    assert "error: --num-gpus 2 on a machine without CUDA" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_pillow_linear_alias_is_restored(monkeypatch):
    from PIL import Image

    monkeypatch.delattr(Image, "LINEAR", raising=False)
    restore_pillow_linear()
    assert Image.LINEAR == Image.BILINEAR


def test_the_package_never_imports_detectron2_model_zoo():
    # model_zoo imports pkg_resources (gone with setuptools >= 81) on v0.6 and main alike.
    code = ("import pkgutil, importlib, sys, pavenet\n"
            "for m in pkgutil.walk_packages(pavenet.__path__, 'pavenet.'): importlib.import_module(m.name)\n"
            "print(sorted(k for k in sys.modules if k.startswith('detectron2.model_zoo')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "projects" / "PAVENet")})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"
