"""Declared models of JSON-RPC params (msgspec), decoded once at the edge into typed values.
Inside the bundler nothing parses wire JSON again: the simulator, the estimator and admission
receive `AccountOverride`s, ints and bytes. Errors are `InvalidParams` (-32602) naming the field.

The hex rules are those of the UserOperation codec (userop/codec.py): one set of rules for
quantities, data and addresses, whichever param carries them."""
from __future__ import annotations

from typing import Any

import msgspec

from ..chain.types import AccountOverride
from ..errors import InvalidParams
from ..userop.codec import parse_address, parse_bytes, parse_quantity

# code in a state override is bounded by the request body limit, not by the UserOperation
# field limit (contracts may exceed 64 KiB on chains past EIP-170)
MAX_CODE_OVERRIDE = 1 << 20

Quantity = str | int


class AccountOverrideParam(msgspec.Struct, forbid_unknown_fields=True, rename={"state_diff": "stateDiff"}):
    """One account of a geth-style stateOverride (eth_call / eth_estimateGas shape)."""

    balance: Quantity | None = None
    nonce: Quantity | None = None
    code: str | None = None
    state: dict[str, Quantity] | None = None
    state_diff: dict[str, Quantity] | None = None


def _slots(slots: dict[str, Quantity] | None, what: str) -> dict[int, int] | None:
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
