# The two commands of the README: `make demo` (set up, then the main job) and `make test`.
PY := .venv/bin/python
DEMO := data/demo

.PHONY: setup demo test lint

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/speechfm synth --out $(DEMO)

test: setup
	$(PY) -m pytest -q

lint: setup
	.venv/bin/ruff check src api tests benchmarks

# Refresh the pinned versions in constraints.txt from the working .venv (torch stays pinned first).
lock: setup
	{ sed -n '1,/^torch==/p' constraints.txt; .venv/bin/pip freeze --exclude-editable | grep -v -E '^(speechfm|torch)=='; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
