"""Installs the `pavenet` package (a Detectron2 project) from projects/PAVENet/pavenet.

torch, torchvision and detectron2 are installed by scripts/setup_env.sh (see docs/INSTALL.md),
not resolved here, so that pip never pulls a multi-GB torch build.
"""
from setuptools import find_packages, setup

setup(
    name="pavenet",
    version="0.1.0",
    description="PAVE-Net: end-to-end multi-person video pose estimation, as a Detectron2 project",
    python_requires=">=3.8",
    package_dir={"pavenet": "projects/PAVENet/pavenet"},
    packages=["pavenet"] + [f"pavenet.{p}" for p in find_packages("projects/PAVENet/pavenet")],
    install_requires=[
        "numpy",
        "scipy",
        "pycocotools",
        "opencv-python-headless",
        "Pillow",
        "fvcore",
        "iopath",
        "tqdm",
    ],
    extras_require={"dev": ["pytest", "hypothesis"], "swin": ["timm>=1.0"],  # timm 1.0 added always_partition
                    "deploy": ["onnx>=1.16", "onnxruntime>=1.17"]},  # GridSample at opset 16+, docs/DEPLOY.md
)
