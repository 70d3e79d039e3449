# Newcomer entry points: `make test` and `make demo` set the environment up themselves.
.PHONY: setup test demo clean
PY := .venv/bin/python

setup:
	bash scripts/setup_env.sh

test: setup
	$(PY) -m pytest -q tests

# The main job: train the tiny PAVE-Net on the embedded synthetic videos (CPU), evaluate, render.
demo: setup
	$(PY) tools/run_demo.py --output output/demo --eval-period 450

clean:
	rm -rf build output
