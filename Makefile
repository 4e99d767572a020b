# chandra: `make run` starts the dashboard, `make test` runs the whole suite.
# Both create or refresh .venv first, so each works on a fresh machine.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8501

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export NUMBA_CACHE_DIR := $(CURDIR)/.numba_cache
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: run test test-fast bench venv clean sample-audio

venv: $(STAMP)

# torch goes in first, pinned: an unpinned torch pulled in by transformers
# would resolve to a multi-GB CUDA build.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[neural,dashboard,cluster,test]"
	touch $(STAMP)

# DATA_DIR="dir1 dir2": folders whose files the dashboard may open (see README, Security).
run: $(STAMP)
	$(BIN)/streamlit run app.py --server.address 127.0.0.1 --server.port $(PORT) \
		$(if $(strip $(DATA_DIR)),-- $(foreach d,$(DATA_DIR),--data-dir $(d)))

test: $(STAMP)
	$(BIN)/python -m pytest -q -ra

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -ra -m "not browser"

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

sample-audio: $(STAMP)
	$(BIN)/python scripts/make_sample_audio.py

clean:
	rm -rf $(VENV) .numba_cache .pytest_cache artifacts
