"""Declared models of JSON-RPC params (msgspec), decoded once at the edge into typed values.
Inside the bundler nothing parses wire JSON again: the simulator, the estimator and admission
receive `AccountOverride`s, ints and bytes. Errors are `InvalidParams` (-32602) naming the field.

The hex rules are those of the UserOperation codec (userop/codec.py, where the UserOperation
param itself is declared, since the stores and the relay decode it too): one set of rules for
quantities, data and addresses, whichever param carries them."""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

import msgspec
from eth_utils import to_checksum_address

from .. import entrypoint as eps
from ..chain.types import AccountOverride
from ..errors import InvalidParams
from ..userop.codec import (
    ADDRESS, QUANTITY, UINT256_MAX, HexAddress, Quantity, explain, parse_address, parse_bytes, parse_quantity, to_int,
)

# code in a state override is bounded by the request body limit, not by the UserOperation
# field limit (contracts may exceed 64 KiB on chains past EIP-170)
MAX_CODE_OVERRIDE = 1 << 20

# the override's quantities are checked by parse_quantity below (its messages name the slot)
_OverrideQuantity = str | int


class AccountOverrideParam(msgspec.Struct, forbid_unknown_fields=True, rename={"state_diff": "stateDiff"}):
    """One account of a geth-style stateOverride (eth_call / eth_estimateGas shape)."""

    balance: _OverrideQuantity | None = None
    nonce: _OverrideQuantity | None = None
    code: str | None = None
    state: dict[str, _OverrideQuantity] | None = None
    state_diff: dict[str, _OverrideQuantity] | None = None


def _slots(slots: dict[str, _OverrideQuantity] | None, what: str) -> dict[int, int] | None:
    if slots is None:
        return None
    return {parse_quantity(k, f"{what} slot"): parse_quantity(v, f"{what} value") for k, v in slots.items()}


def decode_state_override(obj: Any) -> dict[str, AccountOverride]:
    """geth-style `{address: {balance, nonce, code, state, stateDiff}}` -> typed overrides keyed
    by lower-case address. None (absent) is no override."""
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise InvalidParams("invalid stateOverride: expected an object keyed by address")
    out: dict[str, AccountOverride] = {}
    for raw_address, raw_spec in obj.items():
        address = parse_address(raw_address, "stateOverride address")
        where = f"stateOverride[{address}]"
        try:
            spec = msgspec.convert(raw_spec, AccountOverrideParam)
        except msgspec.ValidationError as e:  # msgspec names the field: "... - at `$.balance`"
            raise InvalidParams(f"invalid {where}: {e}".replace("`$", f"`{where}")) from None
        if spec.state is not None and spec.state_diff is not None:
            raise InvalidParams(f"invalid {where}: both state and stateDiff given")
        out[address] = AccountOverride(
            balance=None if spec.balance is None else parse_quantity(spec.balance, f"{where}.balance"),
            nonce=None if spec.nonce is None else parse_quantity(spec.nonce, f"{where}.nonce", (1 << 64) - 1),
            code=None if spec.code is None else parse_bytes(spec.code, f"{where}.code", MAX_CODE_OVERRIDE),
            state=_slots(spec.state, f"{where}.state"),
            state_diff=_slots(spec.state_diff, f"{where}.stateDiff"),
        )
    return out


_OP_HASH = re.compile(r"^0x[0-9a-fA-F]{64}$")


def decode_entry_point(value: Any, served: Sequence[eps.EntryPointVersion]) -> eps.EntryPointVersion:
    """An entryPoint param: one of the EntryPoints this bundler serves (any letter case)."""
    ep = eps.by_address(value) if isinstance(value, str) else None
    if ep is None or ep not in served:
        supported = ", ".join(to_checksum_address(e.address) for e in served)
        raise InvalidParams(f"unsupported entryPoint {value!r}; this bundler serves {supported}")
    return ep


def decode_op_hash(value: Any) -> str:
    """A userOpHash param (32 bytes of hex), lower-cased."""
    if not isinstance(value, str) or not _OP_HASH.match(value):
        # the reference bundler's wording, which compliance suites match
        raise InvalidParams("Missing/invalid userOpHash")
    return value.lower()


BundlingMode = Literal["auto", "manual"]


def decode_bundling_mode(value: Any) -> BundlingMode:
    """debug_bundler_setBundlingMode's param."""
    if value not in ("auto", "manual"):
        raise InvalidParams("bundling mode must be 'auto' or 'manual'")
    return value


class ReputationEntryParam(msgspec.Struct, rename="camel"):
    """One entry of debug_bundler_setReputation (the bundler spec's shape)."""

    address: HexAddress
    ops_seen: Quantity = 0
    ops_included: Quantity = 0


def decode_reputation_entries(obj: Any) -> list[tuple[str, int, int]]:
    """debug_bundler_setReputation's entries -> (lower-case address, opsSeen, opsIncluded)."""
    if not isinstance(obj, list):
        raise InvalidParams("invalid reputation entries: expected an array of {address, opsSeen, opsIncluded}")
    out = []
    for i, item in enumerate(obj):
        if not isinstance(item, dict):
            raise InvalidParams(f"invalid reputation entry {i}: expected an object")
        where = f"reputation entry {i}"
        try:
            entry = msgspec.convert(item, ReputationEntryParam)
        except msgspec.ValidationError as e:  # "<reason> - at `$.opsSeen`"; no path: address missing
            reason, _, path = str(e).partition(" - at `$.")
            field = path.rstrip("`") or "address"
            kind = ADDRESS if field == "address" else QUANTITY
            raise InvalidParams(explain(kind, f"{where} {field}", item.get(field), reason)) from None
        out.append((entry.address.lower(), to_int(entry.ops_seen, f"{where} opsSeen", UINT256_MAX),
                    to_int(entry.ops_included, f"{where} opsIncluded", UINT256_MAX)))
    return out


def decode_account_and_session_key(account: Any, session_key: Any) -> tuple[str, str]:
    """session_* params: the SessionAccount and the session key (lower-case addresses)."""
    return parse_address(account, "account"), parse_address(session_key, "sessionKey")
