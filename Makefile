# Entry points: `make demo` runs the main job end to end on built-in data; `make test` runs the tests.
.PHONY: install test test-fast demo bench clean

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml uv.lock scripts/bootstrap.sh
	bash scripts/bootstrap.sh
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

demo: $(STAMP)
	$(VENV)/bin/sdr demo

bench: $(STAMP)
	$(PY) benchmarks/bench_sparse.py

clean:
	rm -rf $(VENV) runs/demo
