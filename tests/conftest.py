"""Shared pytest fixtures: repository paths, the tiny test config, the real PoseTrack18 sample, deterministic seeds.

Tests find repository files through REPO_ROOT (never relative to the working directory), so the suite
runs from any folder."""

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# Works without `pip install -e .` too.
sys.path.insert(0, str(REPO_ROOT / "projects" / "PAVENet"))

TINY_CONFIG = REPO_ROOT / "configs" / "synthetic" / "pavenet_tiny.yaml"

SHARED = Path(os.environ.get("PAVENET_SHARED_DIR", REPO_ROOT.parent / "shared"))
SAMPLE_DIR = Path(
    os.environ.get("PAVENET_POSETRACK18_SAMPLE", SHARED / "data" / "posetrack18_sample")
)
GOLDEN_DIR = Path(os.environ.get("PAVENET_GOLDEN_DIR", SHARED / "golden"))
OFFICIAL_KEYS = SHARED / "docs" / "official_r50_f3_state_dict_keys.txt"
# Official golden cases of the other shipped models (R50 F=5, Swin-L F=3): a folder apart from GOLDEN_DIR,
# with its own weight maker and key lists; tests/golden_cases.py skips them with this path when absent.
GOLDEN_VARIANTS_DIR = Path(
    os.environ.get("PAVENET_GOLDEN_VARIANTS_DIR", SHARED / "golden_variants")
)
# The recipe every shipped config inherits (add_pavenet_config alone keeps detectron2's defaults).
BASE_CONFIG = REPO_ROOT / "configs" / "Base-PAVENet.yaml"


def load_tiny_cfg(*opts):
    """The one tiny test model's config: configs/synthetic/pavenet_tiny.yaml on the CPU, then KEY VALUE
    `opts` (not frozen). Helpers that need extra keys pass them here instead of building their own."""
    from pavenet.config import load_pavenet_config

    return load_pavenet_config(str(TINY_CONFIG), ["MODEL.DEVICE", "cpu", *opts])


@pytest.fixture
def tiny_cfg():
    """`load_tiny_cfg`, for tests that take it as a fixture: `cfg = tiny_cfg("MODEL.WEIGHTS", "")`."""
    return load_tiny_cfg


@pytest.fixture
def sample_dir() -> Path:
    if not SAMPLE_DIR.is_dir():
        pytest.skip(
            f"real PoseTrack18 sample not found at {SAMPLE_DIR} (set PAVENET_POSETRACK18_SAMPLE)"
        )
    return SAMPLE_DIR


@pytest.fixture
def golden_dir() -> Path:
    if not (GOLDEN_DIR / "r50_f3_seed2026" / "outputs.npz").is_file():
        pytest.skip(f"golden vectors not found under {GOLDEN_DIR} (set PAVENET_GOLDEN_DIR)")
    return GOLDEN_DIR


@pytest.fixture
def official_keys_file() -> Path:
    if not OFFICIAL_KEYS.is_file():
        pytest.skip(f"official key list not found at {OFFICIAL_KEYS} (set PAVENET_SHARED_DIR)")
    return OFFICIAL_KEYS


@pytest.fixture(autouse=True)
def _seed():
    import numpy as np
    import torch

    torch.manual_seed(0)
    np.random.seed(0)
    torch.set_num_threads(2)


@pytest.fixture
def one_torch_thread(_seed):
    """For small-tensor tests: on a loaded 2-core machine two intra-op threads mostly wait for each
    other (measured 20x slower than one). Use with `pytestmark = pytest.mark.usefixtures(...)`."""
    import torch

    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


def _gloo_entry(rank, world_size, init_file, fn, args):
    import torch
    import torch.distributed as dist
    from detectron2.utils import comm

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    # What detectron2's launch sets up besides the global group (comm.get_local_rank etc. read it).
    comm._LOCAL_PROCESS_GROUP = dist.new_group(list(range(world_size)))
    try:
        fn(rank, *args)
        # Every rank done before the group is torn down: a gloo thread still at work when a process exits
        # aborts it ("terminate called without an active exception"), seen now and then on detectron2 main.
        dist.barrier()
    finally:
        dist.destroy_process_group()


def run_gloo_workers(fn, world_size: int, tmp_dir, *args) -> None:
    """Run `fn(rank, *args)` in `world_size` spawned CPU processes joined in one gloo process group, as
    detectron2's `launch` would on GPUs. `fn` must be a module-level (picklable) function."""
    import uuid

    import torch.multiprocessing as mp

    init_file = str(Path(tmp_dir) / f"gloo_init_{uuid.uuid4().hex}")
    mp.spawn(_gloo_entry, args=(world_size, init_file, fn, args), nprocs=world_size, join=True)


@pytest.fixture(scope="module", params=["pytorch", "kernel"])
def msda_impl(request) -> str:
    """MODEL.PAVENET.MSDA_IMPL for tests that must hold with both deformable-attention backends."""
    from pavenet.modeling.msda_backend import KERNEL_INSTALL, KERNEL_PACKAGE, kernel_available

    if request.param == "kernel" and not kernel_available():
        pytest.skip(f"{KERNEL_PACKAGE} is not importable (install: {KERNEL_INSTALL})")
    return request.param
