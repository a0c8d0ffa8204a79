"""The EIP-712 message the owner signs to enable a session (mode 0x02), written once: the struct
types below are the single definition; the eth_signTypedData_v4 JSON is built from them and the
digests are eth-account's EIP-712 hashing of that same JSON, so what a wallet shows and what the
account checks cannot drift apart.

Mirror of contracts/SessionAccount.sol: EnableSession{spec, nonce, epoch} in the domain
{"SessionAccount", "1", chainId, account}; `spec_struct_hash` is the `specHash` of the
SessionGranted event. The differential and contract tests compare these hashes with the
contract's on a real node.
"""
from __future__ import annotations

from typing import Any

from eth_account.messages import SignableMessage, encode_typed_data
from eth_hash.auto import keccak

from .types import Limit, SessionSpec, lower_address

DOMAIN_NAME = "SessionAccount"
DOMAIN_VERSION = "1"


def _fields(declaration: str) -> list[dict[str, str]]:
    return [{"type": kind, "name": name} for kind, name in (f.split(" ") for f in declaration.split(","))]


DOMAIN_TYPE = _fields("string name,string version,uint256 chainId,address verifyingContract")
# the structs of SessionTypes.sol as EIP-712 types (SessionAccount.sol's typehashes are these)
SPEC_TYPES: dict[str, list[dict[str, str]]] = {
    "SessionSpec": _fields("address signer,uint48 validAfter,uint48 validUntil,uint48 period,bool wildcard,"
                           "uint32 usageLimit,CallPolicy[] callPolicies,TransferPolicy[] transferPolicies,"
                           "GasPolicy gas"),
    "CallPolicy": _fields("address target,bytes4 selector,uint256 maxValuePerUse,Limit valueLimit,"
                          "ArgConstraint[] constraints"),
    "TransferPolicy": _fields("address target,uint256 maxValuePerUse,Limit valueLimit"),
    "GasPolicy": _fields("uint256 maxCostPerOp,Limit costLimit,address[] paymasters"),
    "ArgConstraint": _fields("uint8 condition,uint8 argType,uint8 argSize,uint32 index,bytes32 refValue,Limit limit"),
    "Limit": _fields("uint8 kind,uint256 amount"),
}
ENABLE_SESSION_TYPES = {"EnableSession": _fields("SessionSpec spec,uint64 nonce,uint32 epoch"), **SPEC_TYPES}


def domain(account: str, chain_id: int) -> dict[str, Any]:
    """The account's EIP-712 domain (its eip712Domain(), ERC-5267)."""
    return {"name": DOMAIN_NAME, "version": DOMAIN_VERSION, "chainId": chain_id,
            "verifyingContract": lower_address(account)}


def _limit(x: Limit) -> dict[str, int]:
    return {"kind": int(x.kind), "amount": x.amount}


def spec_message(spec: SessionSpec) -> dict[str, Any]:
    """The SessionSpec as an EIP-712 message value (bytes as 0x hex, as wallets take them)."""
    return {
        "signer": lower_address(spec.signer),
        "validAfter": spec.valid_after,
        "validUntil": spec.valid_until,
        "period": spec.period,
        "wildcard": bool(spec.wildcard),
        "usageLimit": spec.usage_limit,
        "callPolicies": [
            {
                "target": lower_address(p.target),
                "selector": "0x" + bytes(p.selector).hex(),
                "maxValuePerUse": p.max_value_per_use,
                "valueLimit": _limit(p.value_limit),
                "constraints": [
                    {"condition": int(c.condition), "argType": int(c.arg_type), "argSize": c.arg_size,
                     "index": c.index, "refValue": "0x" + bytes(c.ref_value).hex(), "limit": _limit(c.limit)}
                    for c in p.constraints
                ],
            }
            for p in spec.call_policies
        ],
        "transferPolicies": [
            {"target": lower_address(t.target), "maxValuePerUse": t.max_value_per_use,
             "valueLimit": _limit(t.value_limit)}
            for t in spec.transfer_policies
        ],
        "gas": {"maxCostPerOp": spec.gas.max_cost_per_op, "costLimit": _limit(spec.gas.cost_limit),
                "paymasters": [lower_address(p) for p in spec.gas.paymasters]},
    }


def eip712_typed_data(spec: SessionSpec, nonce: int, account: str, chain_id: int, epoch: int = 0) -> dict[str, Any]:
    """The enable message as eth_signTypedData_v4 JSON (for wallets signing it); nonce =
    account.grantNonce(spec.signer), epoch = account.epoch() (plus one when the op itself carries
    an EIP-7702 authorization)."""
    return {
        "types": {"EIP712Domain": DOMAIN_TYPE, **ENABLE_SESSION_TYPES},
        "primaryType": "EnableSession",
        "domain": domain(account, chain_id),
        "message": {"spec": spec_message(spec), "nonce": nonce, "epoch": epoch},
    }


def _digest(signable: SignableMessage) -> bytes:
    # EIP-191 version 0x01: keccak(0x19 ‖ 0x01 ‖ domainSeparator ‖ hashStruct(message))
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


def eip712_spec_digest(spec: SessionSpec, nonce: int, account: str, chain_id: int, epoch: int = 0) -> bytes:
    """The digest the owner signs for enable mode (the EIP-712 hash of `eip712_typed_data`)."""
    return _digest(encode_typed_data(full_message=eip712_typed_data(spec, nonce, account, chain_id, epoch)))


def spec_struct_hash(spec: SessionSpec) -> bytes:
    """EIP-712 hashStruct(SessionSpec) (the `specHash` of the SessionGranted event)."""
    # the domain is needed by the encoder only: the struct hash is the message part
    signable = encode_typed_data(full_message={
        "types": {"EIP712Domain": DOMAIN_TYPE, **SPEC_TYPES}, "primaryType": "SessionSpec",
        "domain": domain("0x" + "00" * 20, 0), "message": spec_message(spec)})
    return bytes(signable.body)
