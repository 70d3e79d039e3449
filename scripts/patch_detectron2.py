"""Make the `pb1-detectron2==0.6` sdist installable without compiled ops on today's libraries.

Usage: python scripts/patch_detectron2.py SRC_DIR

The sdist's Python sources are byte-identical to the detectron2 v0.6 tag, but its C++/CUDA sources
are missing. Every change is listed in docs/INSTALL.md; each one is applied idempotently and the
script fails loudly if a file it expects to patch has changed shape.
"""
import re
import sys
from pathlib import Path

C_STANDIN = '''"""Stand-in for detectron2's compiled extension (installed by PAVE-Net's setup script).

The pb1-detectron2 sdist ships no C++/CUDA sources, so nothing was compiled. PAVE-Net needs none
of these ops. Any other op raises an error that names it.
"""


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
        f"detectron2 compiled op '{name}' is not available: this detectron2 was installed from the "
        "pb1-detectron2 sdist without C++/CUDA sources. Ops such as rotated boxes, deformable "
        "convolution and the fast COCO evaluator need a full build: install detectron2 from source "
        "(see docs/INSTALL.md, 'Using your own detectron2') and re-run `make setup`."
    )
'''


def _sub(path: Path, pattern: str, repl: str, *, expect: bool = True, regex: bool = False) -> None:
    text = path.read_text()
    new = re.sub(pattern, repl, text) if regex else text.replace(pattern, repl)
    if new == text and expect and repl not in text:
        sys.exit(f"patch_detectron2: expected to find {pattern!r} in {path}; the sdist differs from v0.6")
    path.write_text(new)


def main(src: Path) -> None:
    pkg = src / "detectron2"
    if not (pkg / "__init__.py").is_file():
        sys.exit(f"patch_detectron2: {src} does not hold an unpacked detectron2 source tree")

    # 1. No compiled extension: build nothing and provide a named-error stand-in for detectron2._C.
    _sub(src / "setup.py", "ext_modules=get_extensions(),", "ext_modules=[],")
    (pkg / "_C.py").write_text(C_STANDIN)

    # 2. Pillow >= 10 removed Image.LINEAR (it was an alias of BILINEAR).
    _sub(pkg / "data/transforms/transform.py", "interp=Image.LINEAR", "interp=Image.BILINEAR")

    # 3. NumPy >= 1.24 removed the np.bool/np.int/np.float aliases of the builtins.
    for path in pkg.rglob("*.py"):
        text = path.read_text()
        new = re.sub(r"\bnp\.(bool|int|float|object)\b(?!_|\d)", r"\1", text)
        if new != text:
            path.write_text(new)

    # 4. setuptools >= 81 removed pkg_resources, which model_zoo used to find its config files.
    mz = pkg / "model_zoo/model_zoo.py"
    _sub(mz, "import pkg_resources\n", "")
    _sub(
        mz,
        'cfg_file = pkg_resources.resource_filename(\n        "detectron2.model_zoo", os.path.join("configs", config_path)\n    )',
        'cfg_file = os.path.join(os.path.dirname(__file__), "configs", config_path)',
    )
    print(f"patched detectron2 sources in {src}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
