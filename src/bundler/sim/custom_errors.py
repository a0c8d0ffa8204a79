"""Custom errors a bundler sees every day, decoded from the ABIs we ship with: the EntryPoints'
(FailedOp, FailedOpWithRevert, ...), SimpleAccount's and the other contracts of the
@account-abstraction packages, OpenZeppelin's (ECDSA, ERC-20, Address, ...), and our own
contracts' (SessionAccount, ...) from build/contracts. So `custom error 0xfce698f7` reads
`ECDSAInvalidSignatureLength(10)`; an error not in any of them keeps its selector."""
from __future__ import annotations

import functools
import glob
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from eth_abi import decode
from eth_abi.exceptions import DecodingError
from eth_typing import ABIError
from eth_utils.abi import abi_to_signature, function_abi_to_4byte_selector, get_abi_input_types

from .. import artifacts

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CustomError:
    signature: str  # "ECDSAInvalidSignatureLength(uint256)"
    name: str
    types: tuple[str, ...]


def _abi_files() -> list[Path]:
    files: list[Path] = []
    try:
        modules = artifacts.node_modules()
    except FileNotFoundError:
        modules = None
    if modules is not None:
        files += [Path(p) for p in sorted(glob.glob(str(modules / "@account-abstraction" / "*" / "artifacts" / "*.json")))]
        # OpenZeppelin comes with the @account-abstraction packages (their Solidity imports it)
        files += [Path(p) for p in sorted(glob.glob(str(modules / "@openzeppelin" / "contracts" / "build" / "contracts" / "*.json")))]
    files += sorted(artifacts.contracts_build_dir().glob("*.json"))
    return files


@functools.cache
def known_errors() -> dict[bytes, CustomError]:
    """selector -> error, from every ABI found (the first of two colliding selectors wins)."""
    table: dict[bytes, CustomError] = {}
    for path in _abi_files():
        try:
            abi = json.loads(path.read_text()).get("abi") or []
        except (OSError, ValueError, AttributeError):
            continue
        for item in abi:
            if not isinstance(item, dict) or item.get("type") != "error":
                continue
            error = cast(ABIError, item)  # an ABI entry of type "error", as solc writes it
            sel = function_abi_to_4byte_selector(error)
            if sel not in table:
                table[sel] = CustomError(abi_to_signature(error), error["name"], tuple(get_abi_input_types(error)))
    if not table:
        log.warning("no contract ABIs found: custom errors are shown as selectors")
    return table


def _show(value) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, str) and not value.startswith("0x"):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(_show(v) for v in value) + ")"
    return str(value)


def describe_custom_error(data: bytes, describe_inner=None) -> str | None:
    """`Name(arg, ...)` of known revert data, None if the selector is unknown or the data do
    not decode. A `bytes` argument that is itself revert data (an inner revert) is described
    with `describe_inner`, when given."""
    error = known_errors().get(bytes(data[:4]))
    if error is None:
        return None
    try:
        values = decode(list(error.types), bytes(data[4:]))
    except (DecodingError, ValueError, OverflowError):
        return None
    shown = []
    for t, v in zip(error.types, values):
        if t == "bytes" and describe_inner is not None and len(v) >= 4:
            shown.append(describe_inner(v))
        else:
            shown.append(_show(v))
    return f"{error.name}({', '.join(shown)})"
