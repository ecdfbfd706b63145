# hiervae: two commands do all set-up.
#   make demo   installs into .venv and runs the main job on the embedded offline dataset
#   make test   installs into .venv and runs the test suite
#   make bench  installs into .venv and runs the benchmarks (docs/performance.md)
# Torch goes in first (CPU wheel 2.13.0 by default) so that pip never pulls CUDA wheels.
# Elsewhere: make install TORCH_INDEX=https://download.pytorch.org/whl/cpu

PYTHON      ?= python3
VENV        ?= .venv
TORCH       ?= torch==2.13.0
TORCH_INDEX ?=
PY          := $(VENV)/bin/python
OUT         ?= out/demo
PYTEST_ARGS ?=

.PHONY: install demo test test-slow bench docs clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[test]"
	bash scripts/ensure_dot.sh
	touch $@

install: $(VENV)/.installed

demo: install
	bash scripts/demo.sh "$(PY)" "$(OUT)"

test: install
	$(PY) -m pytest -n 2 -q $(PYTEST_ARGS)

test-slow: install
	$(PY) -m pytest -n 2 -q -m slow $(PYTEST_ARGS)

# make bench: quick run of every benchmark (a few minutes); make bench BENCH_FULL=1: the
# documented configurations (depth 1000, 20 x 10 training steps, compiled sides: ~15 min).
BENCH_OUT   ?= out/bench
BENCH_FULL  ?=
, := ,
bench: install
	mkdir -p $(BENCH_OUT)
	$(PY) benchmarks/check_depth.py $(if $(BENCH_FULL),,--depths 10 100 --repeats 3) --json $(BENCH_OUT)/check_depth.json
	$(PY) benchmarks/train_speed.py --threads 1 $(if $(BENCH_FULL),--compile,--blocks 6 --steps 5 --warmup 3) --json $(BENCH_OUT)/train_speed.json
	$(PY) benchmarks/iw_speed.py --threads 1 $(if $(BENCH_FULL),--compare --chunks 10$(,)100$(,)1000,--points 20 --samples 200 --repeats 1 --chunks 10$(,)100) --json $(BENCH_OUT)/iw_speed.json
	$(PY) benchmarks/floor.py --threads 1 $(if $(BENCH_FULL),--repeats 5,--repeats 2 --steps 1) --json $(BENCH_OUT)/floor.json

docs: install
	$(PY) scripts/gen_checks_doc.py

clean:
	rm -rf $(VENV) out render .pytest_cache
