# imcodec: `make demo` sets everything up and runs the demo; `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.imcodec-installed
DEMO   ?= demo-out

.PHONY: setup demo test test-quick bench clean

setup: $(STAMP)

# torch==2.13.0 goes in first and explicitly: any other torch spec pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[all]'
	touch $(STAMP)

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
