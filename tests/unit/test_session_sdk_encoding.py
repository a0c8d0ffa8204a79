"""The session SDK's encoding modules without a node: the EIP-712 types (session_sdk.eip712, the
one definition) against the typehash strings of contracts/SessionTypes.sol, digests pinned to the
values the hand-written encoder gave before the hashing moved to eth-account, and CREATE2
against EIP-1014's own example. The contract itself checks the same digests on a node in
tests/integration/test_session_contracts.py."""
from __future__ import annotations

import re

import pytest

from helpers.dev import REPO
from session_sdk.addresses import account_address, create2_address
from session_sdk.eip712 import ENABLE_SESSION_TYPES, SPEC_TYPES, eip712_spec_digest, eip712_typed_data, spec_struct_hash
from session_sdk.types import ArgConstraint, CallPolicy, Condition, GasPolicy, Limit, SessionSpec, TransferPolicy

ACCOUNT = "0x" + "aa" * 20


def _solidity_typehash_strings() -> dict[str, str]:
    """{constant name: the string literal(s) hashed} of SessionSpecHash in SessionTypes.sol."""
    source = (REPO / "contracts/SessionTypes.sol").read_text()
    found = {}
    for name, body in re.findall(r"bytes32 internal constant (\w+_TYPEHASH) =\s*keccak256\(\s*((?:\"[^\"]*\"\s*)+)\)",
                                 source):
        found[name] = "".join(re.findall(r"\"([^\"]*)\"", body))
    return found


def _encode_type(primary: str, types: dict[str, list[dict[str, str]]]) -> str:
    """EIP-712 encodeType: the primary struct, then every struct it references sorted by name."""
    deps: set[str] = set()
    todo = [primary]
    while todo:
        for f in types[todo.pop()]:
            base = f["type"].split("[")[0]
            if base in types and base not in deps and base != primary:
                deps.add(base)
                todo.append(base)

    def one(name: str) -> str:
        return f"{name}({','.join(f['type'] + ' ' + f['name'] for f in types[name])})"
    return one(primary) + "".join(one(d) for d in sorted(deps))


@pytest.mark.parametrize("constant, primary", [
    ("LIMIT_TYPEHASH", "Limit"), ("ARG_CONSTRAINT_TYPEHASH", "ArgConstraint"), ("CALL_POLICY_TYPEHASH", "CallPolicy"),
    ("GAS_POLICY_TYPEHASH", "GasPolicy"), ("TRANSFER_POLICY_TYPEHASH", "TransferPolicy"),
    ("SESSION_SPEC_TYPEHASH", "SessionSpec"), ("ENABLE_SESSION_TYPEHASH", "EnableSession"),
])
def test_eip712_types_are_the_contracts(constant, primary):
    solidity = _solidity_typehash_strings()
    assert _encode_type(primary, ENABLE_SESSION_TYPES) == solidity[constant]


def test_typed_data_carries_the_same_types():
    td = eip712_typed_data(SessionSpec(signer="0x" + "01" * 20), 0, ACCOUNT, 1)
    assert td["primaryType"] == "EnableSession"
    assert {k: v for k, v in td["types"].items() if k != "EIP712Domain"} == ENABLE_SESSION_TYPES
    assert set(ENABLE_SESSION_TYPES) - set(SPEC_TYPES) == {"EnableSession"}
    assert td["domain"] == {"name": "SessionAccount", "version": "1", "chainId": 1, "verifyingContract": ACCOUNT}


def _full_spec() -> SessionSpec:
    return SessionSpec(
        signer="0x" + "51" * 20, valid_after=10, valid_until=2**40, period=3600, wildcard=True, usage_limit=5,
        call_policies=(CallPolicy(target="0x" + "70" * 20, selector=bytes.fromhex("a9059cbb"), max_value_per_use=7,
                                  value_limit=Limit.lifetime(99), constraints=(
            ArgConstraint.typed(Condition.EQ, 0, "address", "0x" + "de" * 20),
            ArgConstraint.typed(Condition.GTE, 2, "int24", -5),
            ArgConstraint.typed(Condition.LTE, 1, "uint96", 2**90, Limit.allowance(10**24)))),
            CallPolicy()),
        transfer_policies=(TransferPolicy(max_value_per_use=10**17, value_limit=Limit.lifetime(10**18)),),
        gas=GasPolicy(max_cost_per_op=10**16, cost_limit=Limit.lifetime(10**17),
                      paymasters=("0x" + "99" * 20, "0x" + "98" * 20)),
    )


def test_digests_are_unchanged():
    # pinned from the hand-written encoder this module replaced (same values the contract computes)
    assert spec_struct_hash(_full_spec()).hex() == "5a1da23f8e1c6631ae5c138c99a0d8981c6c4541838843eff35ea768fdb70265"
    assert eip712_spec_digest(_full_spec(), 3, ACCOUNT, 31337, 2).hex() == (
        "4386de63891078f93db14bab383f38e526a3fe3bf3896586985feae4dda2d741")
    assert eip712_spec_digest(SessionSpec(signer="0x" + "01" * 20), 0, ACCOUNT, 1).hex() == (
        "389d7c93d2641dd4d27bf9a81f856896c38d337e47360367109ce0c0e04fde94")
    # every input is in the digest
    base = eip712_spec_digest(_full_spec(), 3, ACCOUNT, 31337, 2)
    assert len({base, eip712_spec_digest(_full_spec(), 4, ACCOUNT, 31337, 2),
                eip712_spec_digest(_full_spec(), 3, "0x" + "ab" * 20, 31337, 2),
                eip712_spec_digest(_full_spec(), 3, ACCOUNT, 1, 2), eip712_spec_digest(_full_spec(), 3, ACCOUNT, 31337, 3),
                eip712_spec_digest(SessionSpec(signer="0x" + "51" * 20), 3, ACCOUNT, 31337, 2)}) == 6


def test_create2_address_is_eip1014s():
    # EIP-1014 example 0 and example 5
    assert create2_address("0x" + "00" * 20, bytes(32), b"\x00") == "0x4d1a2e2bb4f88f0250f26ffff098b0b30b26bf38"
    assert create2_address("0x00000000000000000000000000000000deadbeef",
                           bytes.fromhex("00000000000000000000000000000000000000000000000000000000cafebabe"),
                           bytes.fromhex("deadbeef" * 11)) == "0x1d8bfdc5d46dc4f61d6b6115972536ebe6a8854c"
    with pytest.raises(ValueError):
        create2_address("0x" + "00" * 20, b"\x01", b"")
    # the account address: the proxy's init code with (implementation, owner) through the factory
    a = account_address("0x" + "11" * 20, "0x" + "22" * 20, "0x" + "33" * 20, 7, b"\x60\x00")
    assert a != account_address("0x" + "11" * 20, "0x" + "22" * 20, "0x" + "33" * 20, 8, b"\x60\x00")


def test_public_key_address_is_ethereums_address_derivation():
    """session_sdk.signatures.public_key_address (the one home of pubkey -> address: session
    recovery, the relay keystore and EIP-7702 authorities use it) against eth-account's own
    derivation, and the curve constants it sits next to."""
    from coincurve import PrivateKey
    from eth_account import Account

    from session_sdk.signatures import SECP256K1_HALF_N, SECP256K1_N, public_key_address

    for secret in (b"\x01".rjust(32, b"\x00"), bytes(range(1, 33)), (SECP256K1_N - 1).to_bytes(32, "big")):
        key = PrivateKey(secret)
        assert public_key_address(key.public_key.format(compressed=False)) == Account.from_key(secret).address.lower()
        with pytest.raises(ValueError):
            public_key_address(key.public_key.format(compressed=True))
    assert SECP256K1_HALF_N == 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0
