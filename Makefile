# The two commands of the README: `make demo` (set up, then the main job) and `make test`.
PY := .venv/bin/python

.PHONY: setup demo test test-fast lint

setup:
	bash scripts/setup.sh

# The main job: the whole recipe on the built-in demo archive through DVC (dvc.yaml, params.yaml).
demo: setup
	PATH="$(CURDIR)/.venv/bin:$$PATH" dvc repro
	@echo
	@echo "Done. Metrics: .venv/bin/dvc metrics show    Plots: .venv/bin/dvc plots show"
	@echo "Serve the model:  .venv/bin/speechfm serve --tracking-uri sqlite:///$(CURDIR)/mlflow.db --reports reports/lur"
	@echo "MLflow UI:        .venv/bin/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db"

# Every test, the slow end-to-end ones included (CI runs this).
test: lint
	$(PY) -m pytest -q

# The inner loop: unit-level tests only (no whole-verb runs, pipeline or services), on every core
# (pytest-xdist, whole files per worker): 3 min 36 s on 2 cores, 2026-12-03 (docs/benchmarks.md).
test-fast: lint
	$(PY) -m pytest -q -m "not slow" -n auto --dist loadfile

lint: setup
	.venv/bin/ruff check src api tests benchmarks

# Refresh the pinned versions in constraints.txt from the working .venv (torch stays pinned first).
lock: setup
	{ sed -n '1,/^torch==/p' constraints.txt; .venv/bin/pip freeze --exclude-editable | grep -v -E '^(speechfm|torch)=='; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
