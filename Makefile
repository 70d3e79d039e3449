# Newcomer entry points: `make test` and `make demo` set the environment up themselves.
.PHONY: setup test demo clean
PY := .venv/bin/python

setup:
	bash scripts/setup_env.sh

test: setup
	$(PY) -m pytest -q tests

clean:
	rm -rf build output
