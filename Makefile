# Newcomer entry points: `make test` and `make demo` set the environment up themselves.
.PHONY: setup test demo lint format clean
PY := .venv/bin/python

setup:
	bash scripts/setup_env.sh

test: setup
	$(PY) -m pytest -q tests

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
