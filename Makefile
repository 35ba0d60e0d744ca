# imcodec: `make demo` sets everything up and runs the demo; `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.imcodec-installed
DEMO   ?= demo-out

.PHONY: setup aot demo test test-quick bench clean

ME_STAMP := $(VENV)/.minkowski-installed

setup: $(STAMP) $(ME_STAMP) aot

# Ahead-of-time compiled Numba kernels (imcodec/_aot/, keyed by a hash of their sources): one-shot
# commands then skip Numba's ~1 s start-up. A few minutes the first time; a no-op while the kernel
# sources are unchanged. Without a C compiler it fails and imcodec keeps using Numba's JIT.
aot: $(STAMP)
	$(BIN)/python -m imcodec.jit_build --if-stale || echo "imcodec: AOT kernel build failed; the Numba JIT is used instead"

# torch==2.13.0 goes in first and explicitly: any other torch spec pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[all]'
	touch $(STAMP)

# MinkowskiEngine 0.5.4, the optional second engine of imcodec.learned: compiled once (~11 min on
# 2 cores, needs apt packages libopenblas-dev ninja-build), its wheel cached in ~/.cache/imcodec/wheels
# and reinstalled from there; a no-op when it already imports. IMCODEC_SKIP_MINKOWSKI=1 skips it.
$(ME_STAMP): $(STAMP) scripts/build_minkowski.sh
	bash scripts/build_minkowski.sh $(BIN)/python
	if [ "$$IMCODEC_SKIP_MINKOWSKI" != 1 ]; then touch $(ME_STAMP); fi

demo: setup
	bash examples/demo.sh $(DEMO)

test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-quick: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow"

bench: setup
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache
