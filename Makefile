# Two commands on a fresh machine: `make serve` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install serve test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# First run creates the development CA, the server's notice key, a demo unit and its API key.
serve: $(STAMP)
	$(BIN)/interchange dev-setup
	$(BIN)/interchange serve

test: $(STAMP)
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python bench/receipts.py
	$(BIN)/python bench/large_dossier.py
	$(BIN)/python bench/rules.py

clean:
	rm -rf $(VENV) data .pytest_cache
