"""Shared pytest fixtures: repository paths, the real PoseTrack18 sample, deterministic seeds."""
import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# Works without `pip install -e .` too.
sys.path.insert(0, str(REPO_ROOT / "projects" / "PAVENet"))

SHARED = Path(os.environ.get("PAVENET_SHARED_DIR", REPO_ROOT.parent / "shared"))
SAMPLE_DIR = Path(os.environ.get("PAVENET_POSETRACK18_SAMPLE", SHARED / "data" / "posetrack18_sample"))
GOLDEN_DIR = Path(os.environ.get("PAVENET_GOLDEN_DIR", SHARED / "golden"))
OFFICIAL_KEYS = SHARED / "docs" / "official_r50_f3_state_dict_keys.txt"


@pytest.fixture
def sample_dir() -> Path:
    if not SAMPLE_DIR.is_dir():
        pytest.skip(f"real PoseTrack18 sample not found at {SAMPLE_DIR} (set PAVENET_POSETRACK18_SAMPLE)")
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


@pytest.fixture(scope="module", params=["pytorch", "kernel"])
def msda_impl(request) -> str:
    """MODEL.PAVENET.MSDA_IMPL for tests that must hold with both deformable-attention backends."""
    from pavenet.modeling.msda_backend import KERNEL_INSTALL, KERNEL_PACKAGE, kernel_available

    if request.param == "kernel" and not kernel_available():
        pytest.skip(f"{KERNEL_PACKAGE} is not importable (install: {KERNEL_INSTALL})")
    return request.param
