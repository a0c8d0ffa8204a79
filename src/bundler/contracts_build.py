"""Load artifacts of our own contracts/ as compiled by `node contracts/compile.mjs`.

Each build/contracts/<ContractName>.json holds {contractName, sourceName, compiler, abi,
bytecode, deployedBytecode} (hex strings with 0x). Generated files are never committed: `make
setup` (or the compile script directly) writes them.
"""
from __future__ import annotations

import functools
import json

from .artifacts import contracts_build_dir


@functools.cache
def load_contract(name: str) -> dict:
    path = contracts_build_dir() / f"{name}.json"
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path} not found: compile the contracts with `node contracts/compile.mjs` (or `make setup`)"
        ) from None


def bytecode(name: str) -> bytes:
    """Creation code (constructor arguments not included)."""
    return bytes.fromhex(load_contract(name)["bytecode"][2:])


def deployed_bytecode(name: str) -> bytes:
    return bytes.fromhex(load_contract(name)["deployedBytecode"][2:])
