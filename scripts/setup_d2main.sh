#!/usr/bin/env bash
# A second environment, .venv-d2main: the project on detectron2 `main` instead of v0.6 (docs/INSTALL.md).
#   bash scripts/setup_d2main.sh D2_SRC     (D2_SRC: a detectron2 source tarball or folder)
# It reuses .venv (made by scripts/setup_env.sh) for everything but detectron2 and this project: a .pth
# file appends .venv's site-packages AFTER the new venv's own, so torch, the requirements and the
# deformable-attention kernel come from .venv while the new venv's detectron2 shadows v0.6. detectron2's
# Python sources are installed without compiling its ops (scripts/patch_detectron2.py: PAVE-Net needs
# none). The project is then installed exactly as docs/INSTALL.md "Using your own detectron2" says.
# pip run in it sees .venv's packages too, so requirements already there are not installed again; it only
# ever installs into (and removes from) .venv-d2main, never .venv ("outside environment").
# Idempotent: a stamp of the source and of these scripts skips a finished setup.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
die() { echo "setup-d2main: ERROR: $*" >&2; exit 1; }
say() { echo "setup-d2main: $*"; }

[ $# -eq 1 ] && [ -n "$1" ] || die "usage: make test-d2main D2_SRC=<detectron2 source tarball or folder>"
SRC="$(realpath -m "$1")"
[ -e "$SRC" ] || die "D2_SRC=$1: no such file or folder"
BASE="${PAVENET_VENV:-$ROOT/.venv}"
VENV="${PAVENET_D2MAIN_VENV:-$ROOT/.venv-d2main}"
BUILD="$ROOT/build/d2main"
[ -x "$BASE/bin/python" ] || die "$BASE is missing: run 'make setup' first (this venv reuses its torch and more)"
BASE_SITE="$("$BASE/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"

if [ -f "$SRC" ]; then
  SRC_ID="$(sha256sum "$SRC" | cut -c1-16)"
elif [ -d "$SRC" ]; then  # a folder: its file list and contents
  SRC_ID="$(cd "$SRC" && find . -name '*.py' -o -name '*.cfg' | LC_ALL=C sort | xargs cat | sha256sum | cut -c1-16)"
else
  die "D2_SRC=$1 is neither a file nor a folder"
fi
INPUTS_ID="$(cat scripts/setup_d2main.sh scripts/patch_detectron2.py setup.py | sha256sum | cut -c1-16)"
STAMP="$VENV/.pavenet-d2main-$SRC_ID-$INPUTS_ID"
if [ -f "$STAMP" ] && "$VENV/bin/python" -c 'import detectron2, pavenet, torch' >/dev/null 2>&1; then
  say "up to date ($VENV)"
  exit 0
fi

# 1. The venv, on .venv's interpreter, with .venv's site-packages appended (zz_: after every other .pth).
# Without its own pip / setuptools: .venv's (newer: setuptools >= 70.1 builds wheels without `wheel`) serve.
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  "$(readlink -f "$BASE/bin/python")" -m venv --without-pip "$VENV" || die "could not create $VENV"
fi
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$BASE_SITE" > "$SITE/zz_pavenet_base_venv.pth"
"$VENV/bin/python" -c 'import torch' || die "torch does not import from $BASE_SITE"

# 2. detectron2 from D2_SRC, without compiled ops.
say "installing detectron2 from $SRC (Python sources, ops not compiled)"
rm -rf "$BUILD"; mkdir -p "$BUILD/src"
if [ -f "$SRC" ]; then
  tar -xzf "$SRC" -C "$BUILD/src" || die "cannot unpack $SRC (expected a .tar.gz of a detectron2 source tree)"
else
  cp -r "$SRC/." "$BUILD/src/"
fi
TREE="$(realpath "$(dirname "$(find "$BUILD/src" -maxdepth 3 -path '*/detectron2/__init__.py' | head -n1)")/..")"
[ -f "$TREE/setup.py" ] || die "$SRC holds no detectron2 source tree (no detectron2/__init__.py beside a setup.py)"
"$VENV/bin/python" scripts/patch_detectron2.py "$TREE" || die "patching $SRC failed"
"$VENV/bin/python" -m pip --disable-pip-version-check install -q --no-deps --no-build-isolation "$TREE" \
  || die "pip could not install detectron2 from $SRC"

# 3. This project, with docs/INSTALL.md's command for an environment that already has torch and detectron2.
say "installing pavenet: pip install --no-build-isolation -e '.[swin,deploy,kernel]'"
# --no-warn-conflicts: pip would list the unmet requirements of .venv's v0.6, which this venv shadows.
"$VENV/bin/python" -m pip --disable-pip-version-check install -q --no-warn-conflicts \
  --no-build-isolation -e '.[swin,deploy,kernel]' \
  || die "pip install -e . failed in $VENV"

"$VENV/bin/python" - "$ROOT" "$SITE" <<'PYEOF' || die "the environment does not import"
import os, sys, warnings
warnings.simplefilter("ignore")
import detectron2, pavenet, torch
root, site = sys.argv[1:3]
here = os.path.realpath(os.path.dirname(pavenet.__file__))
if here != os.path.realpath(os.path.join(root, "projects/PAVENet/pavenet")):
    sys.exit(f"pavenet imports from {here}, not from this checkout")
if not os.path.realpath(detectron2.__path__[0]).startswith(os.path.realpath(site)):
    sys.exit(f"detectron2 imports from {detectron2.__path__[0]}, not from {site}")
print(f"setup-d2main: torch {torch.__version__}, detectron2 at {detectron2.__path__[0]}, pavenet from this checkout")
PYEOF
rm -f "$VENV"/.pavenet-d2main-*; touch "$STAMP"
