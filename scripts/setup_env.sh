#!/usr/bin/env bash
# One-command environment for PAVE-Net on Detectron2 (see docs/INSTALL.md).
# Idempotent: a second run on a set-up machine only checks and prints versions.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${PAVENET_VENV:-$ROOT/.venv}"
PY_REQ="${PAVENET_PYTHON:-python3.11}"
TORCH_SPEC="${PAVENET_TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}"
D2_SDIST="pb1-detectron2==0.6"
D2_SHA256="5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"
BUILD="$ROOT/build/setup"

die() { echo "setup: ERROR: $*" >&2; exit 1; }
say() { echo "setup: $*"; }

# --- 1. Python 3.11 virtual environment -------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  command -v "$PY_REQ" >/dev/null 2>&1 || die "no '$PY_REQ' on PATH. Install Python 3.11 (e.g. 'apt-get install python3.11 python3.11-venv' or pyenv) or point PAVENET_PYTHON at one."
  "$PY_REQ" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null || die "'$PY_REQ' is not Python 3.11; set PAVENET_PYTHON to a Python 3.11 interpreter."
  say "creating $VENV"
  "$PY_REQ" -m venv "$VENV" || die "could not create the venv; install the venv module (apt-get install python3.11-venv)."
fi
PY="$VENV/bin/python"
D2_ORIGIN_FILE="$VENV/.pavenet-detectron2-origin"

# Prints the environment, after checking what steps 2-5 set up: torch, detectron2 and this checkout's pavenet
# import, and the deformable-attention kernel was built for this torch (or failed for it) and imports if built.
report() {
  "$PY" - "$D2_ORIGIN_FILE" "$VENV" "$ROOT" <<'PYEOF'
import os, sys
import warnings
warnings.simplefilter("ignore")  # import-time deprecation notices are not the report
origin_file, venv, root = sys.argv[1:4]
import torch, torchvision, detectron2, pavenet
here = os.path.realpath(os.path.dirname(pavenet.__file__))
if here != os.path.realpath(os.path.join(root, "projects", "PAVENet", "pavenet")):
    sys.exit(f"pavenet imports from {here}, not from this checkout")
tag = " ".join(map(str, (torch.__version__, torch.version.cuda, torch.cuda.is_available()))).translate(str.maketrans(" +", "__"))
msda_stamp = os.path.join(venv, ".pavenet-msda-" + tag)
try:
    import torch_ms_deform_attn as k
    from torch_ms_deform_attn import _C
    kernel = f"kernel torch-ms-deform-attn {k.__version__} (CUDA in the build: {_C.with_cuda})"
except Exception:
    kernel = None
if not (os.path.isfile(msda_stamp) and kernel) and not os.path.isfile(msda_stamp + ".failed"):
    sys.exit("the deformable-attention kernel is not set up for this torch")
print(f"torch {torch.__version__}")
print(f"torchvision {torchvision.__version__}")
print(f"detectron2 {detectron2.__version__} from {open(origin_file).read().strip()} at {detectron2.__path__[0]}")
print(f"CUDA available: {torch.cuda.is_available()}")
print(f"deformable attention: {kernel or 'PyTorch path (torch-ms-deform-attn not importable)'}")
PYEOF
}

# --- fast path: a complete setup from these inputs is checked by one interpreter start (~4 s) instead of five
READY_STAMP="$VENV/.pavenet-ready-$(cat scripts/setup_env.sh scripts/patch_detectron2.py requirements.txt setup.py | sha256sum | cut -c1-16)"
if [ -f "$READY_STAMP" ] && REPORT="$(report 2>/dev/null)"; then
  echo "$REPORT"
  exit 0
fi
PIP() { "$PY" -m pip --disable-pip-version-check "$@" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true; return "${PIPESTATUS[0]}"; }
pip_or_die() { PIP install "$@" || die "pip install $* failed (see the pip output above). Check that the package registry is reachable and re-run 'make setup'."; }

# --- 2. torch / torchvision from this machine's local wheels -----------------------------------
if ! "$PY" -c 'import torch, torchvision' >/dev/null 2>&1; then
  say "installing $TORCH_SPEC (local wheels; see 'pip config list')"
  # shellcheck disable=SC2086
  pip_or_die -q $TORCH_SPEC
fi

# --- 3. project dependencies (stamped by the hash of requirements.txt) -------------------------
REQ_HASH="$(sha256sum requirements.txt | cut -c1-16)"
if [ ! -f "$VENV/.pavenet-deps-$REQ_HASH" ]; then
  say "installing requirements.txt"
  pip_or_die -q -r requirements.txt
  rm -f "$VENV"/.pavenet-deps-*; touch "$VENV/.pavenet-deps-$REQ_HASH"
fi

# --- 3b. the compiled deformable-attention kernel (optional) -----------------------------------
# torch-ms-deform-attn builds from source against the installed torch (C++ compiler; CUDA too when torch
# has CUDA, nvcc is found and a GPU is visible). Rebuilt when torch changes. A failed build is one line,
# and the model runs on its PyTorch path (MODEL.PAVENET.MSDA_IMPL auto).
MSDA_SPEC="torch-ms-deform-attn==0.1.1"
MSDA_STAMP="$VENV/.pavenet-msda-$("$PY" -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available())' | tr ' +' '__')"
if [ ! -f "$MSDA_STAMP" ] || ! "$PY" -c 'import torch_ms_deform_attn' >/dev/null 2>&1; then
  if [ -f "$MSDA_STAMP.failed" ]; then
    say "deformable-attention kernel: not built (failed before for this torch; docs/INSTALL.md retries it); using PyTorch"
  else
    say "building the deformable-attention kernel $MSDA_SPEC (a few minutes)"
    mkdir -p "$ROOT/build"
    if "$PY" -m pip --disable-pip-version-check install -q --no-build-isolation --no-deps --force-reinstall \
        --no-cache-dir --no-binary=torch-ms-deform-attn "$MSDA_SPEC" >"$ROOT/build/msda_build.log" 2>&1 \
        && "$PY" -c 'import torch_ms_deform_attn' >/dev/null 2>&1; then
      rm -f "$VENV"/.pavenet-msda-*; touch "$MSDA_STAMP"
    else
      touch "$MSDA_STAMP.failed"
      say "deformable-attention kernel: build failed (log: build/msda_build.log); continuing with the PyTorch path"
    fi
  fi
fi

# --- 4. detectron2: keep an importable one, else the patched pb1-detectron2 sdist ---------------
if "$PY" -c 'import detectron2' >/dev/null 2>&1; then
  [ -f "$D2_ORIGIN_FILE" ] || echo "existing installation (kept)" > "$D2_ORIGIN_FILE"
else
  say "installing detectron2 from the registry sdist $D2_SDIST"
  rm -rf "$BUILD"; mkdir -p "$BUILD/dl"
  # pip prepares the sdist's metadata, which imports torch: hence --no-build-isolation.
  PIP download -q --no-deps --no-binary :all: --no-build-isolation "$D2_SDIST" -d "$BUILD/dl" \
    || die "could not download $D2_SDIST from the package registry."
  TARBALL="$(ls "$BUILD"/dl/pb1-detectron2-0.6.tar.gz 2>/dev/null)" || die "download of $D2_SDIST produced no tarball."
  GOT="$(sha256sum "$TARBALL" | cut -d' ' -f1)"
  [ "$GOT" = "$D2_SHA256" ] || die "sha256 mismatch for $TARBALL: expected $D2_SHA256, got $GOT. Refusing to install it; delete build/setup and retry, or install detectron2 yourself (docs/INSTALL.md)."
  tar xzf "$TARBALL" -C "$BUILD"
  "$PY" scripts/patch_detectron2.py "$BUILD/pb1-detectron2-0.6" || die "patching detectron2 failed."
  pip_or_die -q --no-deps --no-build-isolation "$BUILD/pb1-detectron2-0.6"
  echo "registry sdist $D2_SDIST (sha256 verified, patched without compiled ops)" > "$D2_ORIGIN_FILE"
fi

# --- 5. this project, editable -----------------------------------------------------------------
if ! "$PY" - <<PYEOF >/dev/null 2>&1
import os, pavenet
assert os.path.realpath(os.path.dirname(pavenet.__file__)) == os.path.realpath("$ROOT/projects/PAVENet/pavenet")
PYEOF
then
  say "installing the pavenet package (editable)"
  pip_or_die -q --no-deps --no-build-isolation -e .
fi

# --- 6. report; later runs take the fast path above -----------------------------------------
report || die "the environment does not import; delete .venv and re-run 'make setup'."
rm -f "$VENV"/.pavenet-ready-*; touch "$READY_STAMP"
