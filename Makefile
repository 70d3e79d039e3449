# Newcomer entry points: `make test` and `make demo` set the environment up themselves.
.PHONY: setup test test-d2main demo clean
PY := .venv/bin/python

setup:
	bash scripts/setup_env.sh

test: setup
	$(PY) -m pytest -q tests

# The suite on detectron2 `main` (or any detectron2 source): a second venv, .venv-d2main, with .venv's torch,
# requirements and kernel, and D2_SRC (a source tarball or folder) instead of v0.6. CI runs it after `make test`.
test-d2main: setup
	@test -n "$(D2_SRC)" || { echo "usage: make test-d2main D2_SRC=<detectron2 source tarball or folder>" >&2; exit 2; }
	bash scripts/setup_d2main.sh "$(D2_SRC)"
	.venv-d2main/bin/python -m pytest -q tests

# The main job: train the tiny PAVE-Net on the embedded synthetic videos (CPU), evaluate, render.
# Seeded (SEED 42 in configs/synthetic/pavenet_tiny.yaml); `make demo SEED=7` draws another run.
demo: setup
	$(PY) tools/quickstart.py --output output/demo --eval-period 450 $(if $(SEED),SEED $(SEED))

clean:
	rm -rf build output
