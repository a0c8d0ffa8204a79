"""Locate the npm-installed toolchain: EntryPoint artifacts, anvil binary, solc-js.

Generated files are never committed; `make setup` installs them under node_modules/.
BUNDLER_NODE_MODULES overrides the search (useful when the package is installed elsewhere).
"""
from __future__ import annotations

import functools
import glob
import json
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


@functools.cache
def node_modules() -> Path:
    candidates = []
    if env := os.environ.get("BUNDLER_NODE_MODULES"):
        candidates.append(Path(env))
    candidates += [REPO_ROOT / "node_modules", Path.cwd() / "node_modules"]
    for c in candidates:
        if (c / "@account-abstraction").is_dir():
            return c
    raise FileNotFoundError(
        "node_modules with @account-abstraction/contracts not found; run `make setup` "
        "or set BUNDLER_NODE_MODULES"
    )


@functools.cache
def load(package: str, name: str) -> dict:
    """A Hardhat artifact from one of the EntryPoint packages (contracts-v07 / contracts-v08)."""
    path = node_modules() / "@account-abstraction" / package / "artifacts" / f"{name}.json"
    with open(path) as f:
        return json.load(f)


def anvil_binary() -> str:
    if env := os.environ.get("BUNDLER_ANVIL"):
        return env
    found = sorted(glob.glob(str(node_modules() / "@foundry-rs" / "anvil-*" / "bin" / "anvil")))
    if not found:
        raise FileNotFoundError("anvil binary not found in node_modules/@foundry-rs; run `make setup`")
    return found[0]


def contracts_build_dir() -> Path:
    """Compiled output of our own contracts/ (written by `bundler.contracts_build`)."""
    return REPO_ROOT / "build" / "contracts"
