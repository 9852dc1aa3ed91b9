# snncompile — the two commands: `make demo` and `make test`. Both build .venv from nothing.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
DEMO_MODEL ?= examples/mnist_cnn.onnx
DEMO_ARGS  ?= --target lava-sim --data examples/data/mnist_test.npz --calib examples/data/mnist_calib.npz \
              --samples 20 --method calib-light+pc --out demo.snn --force

.PHONY: all env demo test test-fast bench bench-accuracy bench-simspeed bench-lava bench-quant bench-mechanisms bench-paper-tables fuzz lint clean

all: test

# torch first (the CPU wheel: any other torch pulls a multi-GB CUDA build), then lava-nc with its pins
# (it declares python<3.11; backends/lava/compat.py makes it work on 3.11), then the rest.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install torch==2.13.0
	$(PIP) install --ignore-requires-python -c constraints.txt lava-nc==0.10.0
	$(PIP) install -c constraints.txt -e ".[test,export,ray]"
	@touch $(STAMP)

env: $(STAMP)

demo: $(STAMP)
	$(BIN)/snncompile $(DEMO_MODEL) $(DEMO_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

bench: bench-accuracy bench-quant bench-lava

# every method converted for each T (the fair protocol), energy per point; about 30-60 minutes on 2 cores
bench-accuracy: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/accuracy.py

# only the "Simulator speed" section of docs/benchmarks.md (a few minutes)
bench-simspeed: $(STAMP)
	$(BIN)/python benchmarks/accuracy.py --speed-only

bench-quant: $(STAMP)
	$(BIN)/python benchmarks/quantization.py

# the default compile (energy search) of each example: chosen point, ANN/SNN energy, frontier plots in
# docs/img/ (the "Energy search" section; 1.2 min at load 2 on 2 cores)
bench-frontiers: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/frontiers.py

# the seed papers' mechanisms on the examples (the "Mechanism checks" section, about 2 minutes idle)
bench-mechanisms: $(STAMP)
	$(BIN)/python benchmarks/mechanisms.py

# method x T tables, mean and std over 5 calibration seeds (the "Paper-style tables" section)
bench-paper-tables: $(STAMP)
	$(BIN)/python benchmarks/paper_tables.py

bench-lava: $(STAMP)
	$(BIN)/python benchmarks/lava.py

# ruff is not a runtime or test dependency: installed here on first use
lint: $(STAMP)
	@$(BIN)/python -m ruff --version >/dev/null 2>&1 || $(PIP) install ruff
	$(BIN)/python -m ruff check snncompile backends tests

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

# Side-by-side with SpikingJelly, sinabs and SNN Toolbox, each in its own venv under benchmarks/peers/
# (never in .venv); writes docs/peers.md and docs/peers_*.png. Takes hours on 2 cores: see docs/peers.md.
.PHONY: bench-peers
bench-peers: $(STAMP)
	bash benchmarks/peers/bench.sh

# Mutation fuzzing of the example models (tests/test_fuzz.py runs 80 cases; this runs thousands): every
# mutant must compile or fail with a one-line CompileError. Crashing models land in fuzz-findings/.
fuzz: $(STAMP)
	$(BIN)/python benchmarks/fuzz.py --cases 3000 --minutes 15 --out fuzz-findings

# Compile and simulate a generated VGG-style CNN (3x64x64, ~2.7M parameters): compile stage times, peak RSS,
# float and fixed-point simulator cost per sample-step vs T and batch. About 10 minutes on 2 cores.
.PHONY: bench-scale
bench-scale: $(STAMP)
	$(BIN)/python benchmarks/scale.py

# Conversion cost of every method on every example model at T = 32: convert seconds and the ratio to one float
# simulation of the 256 calibration samples, plus a profile of what the residual example's conversions simulate
# (docs/benchmarks.md section "compile-time"). About 3 minutes on 2 cores.
.PHONY: bench-compile
bench-compile: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/compile_time.py

# The residual example's whole compile as a user runs it (fresh CLI processes, 2 cores, torch's default threads):
# issue 21's `--method adafire -T 32` 5 times, the two searches once (docs/benchmarks.md section "cli-time").
# About 3 minutes; needs an otherwise idle machine.
.PHONY: bench-cli
bench-cli: $(STAMP)
	$(BIN)/python benchmarks/cli_time.py
