"""Installs the `pavenet` package (a Detectron2 project) from projects/PAVENet/pavenet.

Into an environment that already has torch and detectron2 (docs/INSTALL.md, "Using your own detectron2"):

    pip install --no-build-isolation -e '.[swin,deploy,kernel]'

detectron2 is not declared: it is not on the package registry under its own name (install it from source,
or let scripts/setup_env.sh install the patched v0.6). torch / torchvision are declared without a version,
so an installed build is kept and pip never replaces it. `--no-build-isolation` lets the `kernel` extra
compile against that torch. tests/test_setup.py checks that every third-party module the package imports
is declared here.
"""

from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "torch",
    "torchvision",
    "numpy",
    "scipy",
    "pycocotools>=2.0.2",  # detectron2's COCOEvaluator, which the Trainer builds with use_fast_impl=False
    "opencv-python-headless",
    "Pillow",
    "fvcore>=0.1.5,<0.1.6",
    "tqdm",
]
EXTRAS_REQUIRE = {
    "swin": ["timm>=1.0"],  # timm 1.0 added always_partition
    "deploy": ["onnx>=1.16", "onnxruntime>=1.17"],  # GridSample at opset 16+, docs/DEPLOY.md
    # The compiled deformable attention; built from source against the installed torch (--no-build-isolation).
    "kernel": ["torch-ms-deform-attn==0.1.1"],
    "dev": ["pytest", "motmetrics", "hypothesis"],
}

setup(
    name="pavenet",
    version="0.1.0",
    description="PAVE-Net: end-to-end multi-person video pose estimation, as a Detectron2 project",
    python_requires=">=3.8",
    package_dir={"pavenet": "projects/PAVENet/pavenet"},
    packages=["pavenet"] + [f"pavenet.{p}" for p in find_packages("projects/PAVENet/pavenet")],
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
)
