# One entry point for every routine task. `make train` and `make test` work on a fresh clone:
# both create the virtual environment and install the project first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: help install train train-classify train-score train-multitask test test-fast bench measure-pruning stress gpu-check serve cluster cluster-stop lint format tensorboard clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

install: $(INSTALLED)  ## create $(VENV) and install boneage with its dev tools

$(INSTALLED): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

train: install  ## train on the built-in demo data set and print the summary
	$(PY) -m boneage.train experiment=demo $(ARGS)

train-classify: install  ## the classification demo: the hands' developmental stage
	$(PY) -m boneage.train experiment=demo_classify $(ARGS)

train-score: install  ## the score demo: the hands' acquisition quality, judged by SRCC
	$(PY) -m boneage.train experiment=demo_score $(ARGS)

train-multitask: install  ## the multi-task demo: stage, quality and age from one backbone
	$(PY) -m boneage.train experiment=demo_multitask $(ARGS)

# Test processes each take whole files (their shared trained runs stay in one process), in the order
# collected (longest first, tests/conftest.py): by default xdist reorders files by their test count.
# The full suite runs three on 2 cores: its SLURM, kill and stall tests spend minutes waiting, and a
# third process keeps both cores busy meanwhile (figures in README, Development). The fast tier
# waits for nothing: two.
XDIST := --dist loadfile --no-loadscope-reorder

test: install  ## run the test suite
	$(PY) -m pytest -n 3 $(XDIST) $(ARGS)

test-fast: install  ## the test suite without the slow end-to-end tests
	$(PY) -m pytest -m "not slow" -n 2 $(XDIST) $(ARGS)

bench: install  ## speed: loader (cold vs cached), framework overhead, models, start-up; ARGS=bench=quick for seconds
	$(PY) -m boneage.bench $(ARGS)

measure-pruning: install  ## the demo search with and without pruning: epochs trained and best val MAE (about 30 minutes)
	$(PY) scripts/measure_pruning.py $(ARGS)

stress: install  ## run the 3-job DDP sweep 10 times: hangs must be 0 (not in CI; ARGS="--rounds 3")
	$(PY) scripts/stress_ddp_sweep.py $(ARGS)

gpu-check: install  ## on a GPU machine: every model under 16/bf16-mixed, channels_last, compile, DDP, OOM, speed; a dry run elsewhere
	$(PY) -m boneage.gpu_check $(ARGS)

lint: install  ## ruff lint and format check
	$(VENV)/bin/ruff check src tests scripts
	$(VENV)/bin/ruff format --check src tests scripts

format: install  ## apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix src tests scripts
	$(VENV)/bin/ruff format src tests scripts

serve: install  ## serve a run on http://127.0.0.1:8000/ (RUN=<run dir>; default: the newest demo run of make train)
	$(PY) -m boneage.serve run=$(or $(RUN),$(lastword $(sort $(wildcard outputs/demo/*)))) $(ARGS)

cluster:  ## start a one-host SLURM cluster here (root; apt-get install -y slurm-wlm munge): try launcher=slurm
	scripts/local_slurm.sh start

cluster-stop:  ## stop it (and cancel its jobs)
	scripts/local_slurm.sh stop

tensorboard: install  ## TensorBoard over every single run and sweep
	$(VENV)/bin/tensorboard --logdir_spec outputs:outputs,multirun:multirun

clean:  ## remove caches (never runs, data or the venv)
	rm -rf .pytest_cache .ruff_cache
	find . -name __pycache__ -prune -not -path './$(VENV)/*' -exec rm -rf {} +
