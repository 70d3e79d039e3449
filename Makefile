# Newcomer entry points: `make test` and `make demo` set the environment up themselves.
.PHONY: setup test test-d2main demo lint format clean
PY := .venv/bin/python

setup:
	bash scripts/setup_env.sh

# Run from tests/: the suite finds every repository file through tests/conftest.py, whatever the folder.
test: setup
	cd tests && $(CURDIR)/$(PY) -m pytest -q

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

# Lint and format check (ruff, configured in pyproject.toml); `make format` rewrites the files.
lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: setup
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:
	rm -rf build output

# Mutation testing of the claim-carrying modules listed in setup.cfg [pavenet.mutate] (slow, not in CI;
# docs/TESTING.md). `make mutate MODULES="ap tracker"` runs a subset.
.PHONY: mutate
mutate: setup
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) scripts/mutate.py $(MODULES)
