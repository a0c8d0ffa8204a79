"""ERC-1271 signatures of a SessionAccount's owner in the ERC-7739 forms the account checks
(contracts/Erc7739.sol; the TypeScript twin is sdk/ts/src/erc1271.ts).

The owner signs EIP-712 typed data nested in the ACCOUNT's domain, so a signature holds for one
account on one chain; a session key's signature is never valid (isValidSignature answers for the
owner only).

    sig = sign_message(owner_key, account, chain_id, "Sign in to example.org")
    sig = sign_typed_data(owner_key, account, chain_id, permit_typed_data)   # full EIP-712 dict
"""
from __future__ import annotations

import re
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data

from . import eip712

PERSONAL_SIGN_TYPES = {"PersonalSign": [{"name": "prefixed", "type": "bytes"}]}
TYPED_DATA_SIGN_FIELDS = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
    {"name": "salt", "type": "bytes32"},
]
ERC1271_MAGIC = bytes.fromhex("1626ba7e")
ERC7739_PROBE = bytes.fromhex("7739" * 16)
DOMAIN_FIELDS = [("name", "string"), ("version", "string"), ("chainId", "uint256"),
                 ("verifyingContract", "address"), ("salt", "bytes32")]


def account_domain(account: str, chain_id: int) -> dict[str, Any]:
    """The account's EIP-712 domain (its eip712Domain(), ERC-5267), as for enable signatures."""
    return eip712.domain(account, chain_id)


def prefixed_message(message: str | bytes) -> bytes:
    """EIP-191 version 0x45: what personal_sign hashes."""
    data = message.encode() if isinstance(message, str) else message
    return b"\x19Ethereum Signed Message:\n" + str(len(data)).encode() + data


def personal_sign_typed_data(message: str | bytes, account: str, chain_id: int) -> dict[str, Any]:
    """What the owner signs for isValidSignature(eip191_hash(message), signature)."""
    return {
        "types": {"EIP712Domain": _domain_type(account_domain(account, chain_id)), **PERSONAL_SIGN_TYPES},
        "primaryType": "PersonalSign",
        "domain": account_domain(account, chain_id),
        "message": {"prefixed": prefixed_message(message)},
    }


def typed_data_sign_typed_data(typed_data: dict[str, Any], account: str, chain_id: int) -> dict[str, Any]:
    """What the owner signs for isValidSignature(eip712_hash(typed_data), signature): the app's struct
    as `contents` of TypedDataSign in the app's domain, with the account's domain fields."""
    primary, types = _app_types(typed_data)
    return {
        "types": {"EIP712Domain": _domain_type(typed_data.get("domain", {})), **types,
                  "TypedDataSign": [{"name": "contents", "type": primary}, *TYPED_DATA_SIGN_FIELDS]},
        "primaryType": "TypedDataSign",
        "domain": typed_data.get("domain", {}),
        "message": {"contents": typed_data["message"], **account_domain(account, chain_id), "salt": b"\x00" * 32},
    }


def wrap_typed_data_signature(typed_data: dict[str, Any], owner_signature: bytes) -> bytes:
    """ownerSignature ‖ APP_DOMAIN_SEPARATOR ‖ contents ‖ contentsDescription ‖ uint16(length);
    explicit mode (the primary type's name appended) when EIP-712's order of the contents' types
    does not start with the primary type."""
    primary, types = _app_types(typed_data)
    app = encode_typed_data(full_message={**typed_data, "types": {
        "EIP712Domain": _domain_type(typed_data.get("domain", {})), **types}})
    contents_type = _sorted_types(primary, types)
    description = (contents_type if contents_type.startswith(primary + "(") else contents_type + primary).encode()
    return owner_signature + app.header + app.body + description + len(description).to_bytes(2, "big")


def sign_message(private_key: str, account: str, chain_id: int, message: str | bytes) -> bytes:
    """The isValidSignature signature of `message` (ERC-7739 PersonalSign) by `private_key`."""
    signable = encode_typed_data(full_message=personal_sign_typed_data(message, account, chain_id))
    return bytes(Account.sign_message(signable, private_key).signature)


def sign_typed_data(private_key: str, account: str, chain_id: int, typed_data: dict[str, Any]) -> bytes:
    """The isValidSignature signature of an app's EIP-712 `typed_data` (ERC-7739 TypedDataSign)."""
    nested = encode_typed_data(full_message=typed_data_sign_typed_data(typed_data, account, chain_id))
    return wrap_typed_data_signature(typed_data, bytes(Account.sign_message(nested, private_key).signature))


def _domain_type(domain: dict[str, Any]) -> list[dict[str, str]]:
    return [{"name": n, "type": t} for n, t in DOMAIN_FIELDS if n in domain]


def _app_types(typed_data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    primary = typed_data["primaryType"]
    if primary == "EIP712Domain":
        raise ValueError("typed data whose primary type is EIP712Domain has no contents to sign")
    return primary, {k: v for k, v in typed_data["types"].items() if k != "EIP712Domain"}


def _sorted_types(primary: str, types: dict[str, Any]) -> str:
    """EIP-712 encodeType of `primary` and the structs it references, all sorted by name (their
    order as dependencies of TypedDataSign)."""
    seen: set[str] = set()
    todo = [primary]
    while todo:
        name = todo.pop()
        if name in seen or name not in types:
            continue
        seen.add(name)
        todo.extend(re.sub(r"(\[\d*\])+$", "", f["type"]) for f in types[name])
    return "".join(f"{n}({','.join(f['type'] + ' ' + f['name'] for f in types[n])})" for n in sorted(seen))
