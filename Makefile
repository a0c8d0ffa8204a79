# Two entry points do all set-up on a fresh machine:
#   make run   -> local anvil chain with the EntryPoints + the bundler on it
#   make test  -> the whole test suite
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: setup contracts sdk run test bench clean postgres

setup: $(VENV)/.installed node_modules/.installed contracts sdk

# our own Solidity (contracts/), compiled with solc-js; the script skips unchanged sources
contracts: node_modules/.installed
	node contracts/compile.mjs

# the TypeScript SDK (sdk/ts) and the app-side examples (examples/ts), compiled with the pinned
# tsc of the toolchain (package.json); the Python SDK (sdk/python) is installed with the venv
sdk: sdk/ts/dist/.built examples/ts/.built

examples/ts/.built: sdk/ts/dist/.built examples/ts/tsconfig.json $(wildcard examples/ts/*.ts)
	node_modules/.bin/tsc -p examples/ts/tsconfig.json
	touch $@

sdk/ts/dist/.built: node_modules/.installed sdk/ts/tsconfig.json sdk/ts/package.json $(wildcard sdk/ts/src/*.ts)
	node_modules/.bin/tsc -p sdk/ts/tsconfig.json
	touch $@

$(VENV)/.installed: pyproject.toml sdk/python/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e sdk/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm install --no-audit --no-fund
	touch $@

run: setup
	$(BIN)/bundler dev $(ARGS)

test: setup postgres
	$(BIN)/pytest -q $(ARGS)

# Debian's PostgreSQL server for the PostgresStore tests (they start a private cluster from
# it, and skip saying why if it is not there); installed when missing and we are root.
postgres:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing postgresql (Debian package) for the PostgresStore tests"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
		|| echo "could not install postgresql: the PostgresStore tests will be skipped"; \
	else echo "postgresql is not installed (needs root for apt-get): the PostgresStore tests will be skipped"; fi

bench: setup
	$(BIN)/python benchmarks/load.py $(ARGS)

clean:
	rm -rf $(VENV) node_modules build .pytest_cache sdk/ts/dist examples/ts/*.js examples/ts/.built
