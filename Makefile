# Two entry points do all set-up on a fresh machine:
#   make run   -> local anvil chain with the EntryPoints + the bundler on it
#   make test  -> the whole test suite
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: setup contracts run test bench clean

setup: $(VENV)/.installed node_modules/.installed contracts

# our own Solidity (contracts/), compiled with solc-js; the script skips unchanged sources
contracts: node_modules/.installed
	node contracts/compile.mjs

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm install --no-audit --no-fund
	touch $@

run: setup
	$(BIN)/bundler dev $(ARGS)

test: setup
	$(BIN)/pytest -q $(ARGS)

bench: setup
	$(BIN)/python benchmarks/load.py $(ARGS)

clean:
	rm -rf $(VENV) node_modules build .pytest_cache
