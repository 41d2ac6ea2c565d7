# Two-command quick start: `make run` (install + main job), `make test` (install + test suite).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= cpu,slide,dev
RES ?= 2.5
LOGDIR ?= runs
TB_ARGS ?=

.PHONY: install run test lint benchmark reproduce tensorboard preview clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed

run: install
	$(PY) -m ird_tf.experiments.distill --res $(RES)

test: install
	KERAS_HOME=$(CURDIR)/.cache/keras $(PY) -m pytest -n 2 --timeout 900 -q

lint: install
	$(VENV)/bin/ruff check .

benchmark: install
	$(PY) tools/benchmark.py all

reproduce: install
	bash tools/reproduce_cpu.sh

# Every run below LOGDIR (default: all runs) in one TensorBoard on 127.0.0.1; e.g. make tensorboard
# LOGDIR=runs/students, or TB_ARGS="--port 6007".
tensorboard: install
	$(VENV)/bin/tensorboard --logdir $(LOGDIR) --host 127.0.0.1 $(TB_ARGS)

preview: install
	$(PY) -m ird_tf.data.synthetic --preview docs/synthetic_preview.png

clean:
	rm -rf .cache runs build *.egg-info
