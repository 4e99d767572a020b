# chandra: `make run` starts the dashboard, `make test` runs the whole suite.
# Both create or refresh .venv first, so each works on a fresh machine.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8501

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
# numba's cache: $NUMBA_CACHE_DIR if set, else ~/.cache/chandra/numba (chosen by
# `import chandra`, so the CLI, the dashboard, its job workers and the tests share it).
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: run test test-fast bench venv warm clean sample-audio

venv: $(STAMP)

# torch goes in first, pinned: an unpinned torch pulled in by transformers
# would resolve to a multi-GB CUDA build.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[neural,dashboard,cluster,test]"
	$(BIN)/python -m chandra.warmup
	touch $(STAMP)

# Compile numba's kernels once (librosa, umap, chandra's oracle) so no first run
# pays for it; a no-op when the cache is warm for these package versions.
warm: $(STAMP)
	$(BIN)/python -m chandra.warmup --if-cold

# DATA_DIR="dir1 dir2": folders whose files the dashboard may open (see README, Security).
run: $(STAMP) warm
	$(BIN)/streamlit run app.py --server.address 127.0.0.1 --server.port $(PORT) \
		$(if $(strip $(DATA_DIR)),-- $(foreach d,$(DATA_DIR),--data-dir $(d)))

test: $(STAMP) warm
	$(BIN)/python -m pytest -q -ra

test-fast: $(STAMP) warm
	$(BIN)/python -m pytest -q -ra -m "not browser"

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

sample-audio: $(STAMP)
	$(BIN)/python scripts/make_sample_audio.py

clean:
	rm -rf $(VENV) .numba_cache .pytest_cache artifacts
