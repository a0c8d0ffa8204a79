"""The string an app hands its backend (serializeSession in the TypeScript SDK): "session1:" +
base64url(JSON). The JSON spec uses the Solidity field names (camelCase); uints are JSON numbers
or 0x-hex strings (both accepted; wide values are written as hex), bytes are 0x-hex. The
conversion follows the types dataclasses' fields, so a new SessionSpec field needs no edit here."""
from __future__ import annotations

import base64
import dataclasses
import json
import typing
from dataclasses import dataclass
from typing import Any

from .types import SessionSpec

PREFIX = "session1:"
_JSON_SAFE_INT = 1 << 48


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def to_json(value: Any) -> Any:
    """A spec dataclass (or any part of one) as JSON-safe data."""
    if dataclasses.is_dataclass(value):
        return {_camel(f.name): to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [to_json(v) for v in value]
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if value < _JSON_SAFE_INT else hex(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return value


def _int(v: Any) -> int:
    if isinstance(v, bool):
        raise ValueError("expected a number, got a bool")
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        return int(v, 16) if v.startswith("0x") else int(v)
    raise ValueError(f"expected a number, got {v!r}")


def from_json(cls: type, data: Any) -> Any:
    """Inverse of to_json for dataclass `cls` (field types read from its annotations)."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        key = _camel(f.name)
        if key not in data:
            raise ValueError(f"{cls.__name__}.{key} is missing")
        kwargs[f.name] = _convert(hints[f.name], data[key])
    return cls(**kwargs)


def _convert(hint: Any, v: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin is tuple:
        (inner, *_rest) = typing.get_args(hint)
        return tuple(_convert(inner, x) for x in v)
    if dataclasses.is_dataclass(hint):
        return from_json(hint, v)
    if hint is bool:
        return bool(v)
    if hint is int:
        return _int(v)
    if hint is bytes:
        return bytes.fromhex(v[2:])
    if hint is str:
        return v.lower() if isinstance(v, str) and v.startswith("0x") else v
    return v


def spec_to_json(spec: SessionSpec) -> dict:
    return to_json(spec)


def spec_from_json(data: dict) -> SessionSpec:
    return from_json(SessionSpec, data)


@dataclass(frozen=True)
class SessionGrant:
    chain_id: int
    entry_point: str  # "0.7" | "0.8" | "0.9"
    account: str
    owner: str
    spec: SessionSpec
    factory: str | None = None
    salt: int = 0
    eip7702_implementation: str | None = None
    enable: tuple[bytes, int] | None = None  # (owner signature, grant nonce)
    session_private_key: str | None = None


def serialize_session(grant: SessionGrant, include_private_key: bool = False) -> str:
    out: dict[str, Any] = {"v": 1, "chainId": grant.chain_id, "entryPoint": grant.entry_point,
                           "account": grant.account, "owner": grant.owner, "spec": spec_to_json(grant.spec)}
    if grant.factory:
        out["factory"], out["salt"] = grant.factory, hex(grant.salt)
    if grant.eip7702_implementation:
        out["eip7702Implementation"] = grant.eip7702_implementation
    if grant.enable:
        out["enable"] = {"ownerSignature": "0x" + grant.enable[0].hex(), "nonce": grant.enable[1]}
    if include_private_key:
        if not grant.session_private_key:
            raise ValueError("include_private_key: the grant has no session_private_key")
        out["sessionPrivateKey"] = grant.session_private_key
    raw = json.dumps(out, separators=(",", ":")).encode()
    return PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def deserialize_session(text: str) -> SessionGrant:
    if not text.startswith(PREFIX):
        raise ValueError(f"not a serialized session (expected the prefix {PREFIX})")
    body = text[len(PREFIX):]
    data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    if data.get("v") != 1:
        raise ValueError(f"unknown serialized session version {data.get('v')!r}")
    enable = data.get("enable")
    return SessionGrant(
        chain_id=_int(data["chainId"]),
        entry_point=data["entryPoint"],
        account=data["account"].lower(),
        owner=data["owner"].lower(),
        spec=spec_from_json(data["spec"]),
        factory=data["factory"].lower() if data.get("factory") else None,
        salt=_int(data.get("salt", 0)),
        eip7702_implementation=data["eip7702Implementation"].lower() if data.get("eip7702Implementation") else None,
        enable=(bytes.fromhex(enable["ownerSignature"][2:]), _int(enable["nonce"])) if enable else None,
        session_private_key=data.get("sessionPrivateKey"),
    )
