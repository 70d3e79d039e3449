"""Make a detectron2 source tree installable without compiled ops on today's libraries.

Usage: python scripts/patch_detectron2.py SRC_DIR

Two trees are patched: the `pb1-detectron2==0.6` sdist (Python sources byte-identical to the v0.6 tag,
C++/CUDA sources missing; `make setup`) and upstream `main` (`make test-d2main`, whose C++ sources are
simply not compiled). Every change is listed in docs/INSTALL.md; each one is applied idempotently, is a
no-op where the tree already has it (main has no `Image.LINEAR`), and the script fails loudly if a file it
expects to patch has changed shape.
"""

import re
import sys
from pathlib import Path

C_STANDIN = '''"""Stand-in for detectron2's compiled extension (installed by PAVE-Net's setup scripts).

This detectron2 was installed from its Python sources without compiling its C++/CUDA ops. PAVE-Net
needs none of them. Any op raises an error that names it: v0.6 reaches ops through this module, main
through `torch.ops.detectron2`, which the real extension registers and this module replaces.
"""
import torch


class CompiledOpUnavailableError(RuntimeError):
    pass


def get_compiler_version():
    return "none (pure-Python detectron2._C stand-in)"


def get_cuda_version():
    return "none"


def has_cuda():
    return False


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    raise CompiledOpUnavailableError(
        f"detectron2 compiled op '{name}' is not available: this detectron2 was installed from its "
        "Python sources without compiling its C++/CUDA ops. Ops such as rotated boxes, deformable "
        "convolution and the fast COCO evaluator need a full build: install detectron2 from source "
        "(see docs/INSTALL.md, 'Using your own detectron2') and re-run `make setup`."
    )


class _MissingOps:
    """`torch.ops.detectron2` without the extension: every op raises the named error above."""

    def __getattr__(self, name):
        return __getattr__(name)


torch.ops.detectron2 = _MissingOps()
'''


def _sub(path: Path, pattern: str, repl: str, *, expect: bool = True, regex: bool = False) -> None:
    text = path.read_text()
    new = re.sub(pattern, repl, text) if regex else text.replace(pattern, repl)
    if new == text and expect and repl not in text:
        sys.exit(
            f"patch_detectron2: expected to find {pattern!r} in {path}; the tree differs from v0.6 / main"
        )
    path.write_text(new)


def main(src: Path) -> None:
    pkg = src / "detectron2"
    if not (pkg / "__init__.py").is_file():
        sys.exit(f"patch_detectron2: {src} does not hold an unpacked detectron2 source tree")

    # 1. No compiled extension: build nothing and provide a named-error stand-in for detectron2._C.
    _sub(src / "setup.py", "ext_modules=get_extensions(),", "ext_modules=[],")
    (pkg / "_C.py").write_text(C_STANDIN)

    # 2. Pillow >= 10 removed Image.LINEAR (it was an alias of BILINEAR); v0.6 only, main has BILINEAR.
    _sub(pkg / "data/transforms/transform.py", "interp=Image.LINEAR", "interp=Image.BILINEAR")

    # 3. NumPy >= 1.24 removed the np.bool/np.int/np.float aliases of the builtins.
    for path in pkg.rglob("*.py"):
        text = path.read_text()
        new = re.sub(r"\bnp\.(bool|int|float|object)\b(?!_|\d)", r"\1", text)
        if new != text:
            path.write_text(new)

    # 4. setuptools >= 81 removed pkg_resources, which model_zoo (v0.6 and main) uses to find its config files.
    mz = pkg / "model_zoo/model_zoo.py"
    _sub(mz, "import pkg_resources\n", "")
    _sub(
        mz,
        'cfg_file = pkg_resources.resource_filename(\n        "detectron2.model_zoo", '
        'os.path.join("configs", config_path)\n    )',
        'cfg_file = os.path.join(os.path.dirname(__file__), "configs", config_path)',
    )
    print(f"patched detectron2 sources in {src}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
