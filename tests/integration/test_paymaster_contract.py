"""SponsorPaymaster (contracts/SponsorPaymaster.sol) on a real EntryPoint v0.7, v0.8 and v0.9: a
signature pays for exactly the op, chain, EntryPoint, paymaster and window it was made for, on
v0.9 also when it rides outside the userOpHash as the op's paymasterSignature.

Each case sends (or eth_calls) a real handleOps; the EntryPoint's FailedOp reason is checked."""
from __future__ import annotations

import os

import pytest
from eth_abi import decode, encode
from eth_account import Account

from bundler.devchain.anvil import ANVIL_ACCOUNT0
from bundler.entrypoint import V07, V08, V09
from bundler.paymaster.data import STUB_SIGNATURE, Terms, encode_paymaster_data, encode_terms, sponsor_hash
from bundler.paymaster.signer import PaymasterSigner
from session_sdk.signatures import MODE_SESSION, SECP256K1_N
from bundler.userop import pack
from bundler.userop.packing import PACKED_USEROP_TYPE

from helpers.accounts import (
    entry_point_deposit, eth_call, latest_block, selector, send_handle_ops, user_operation_events,
)
from helpers.paymaster import sponsor_paymasters
from helpers.sessions import simulate_failure

SIGNER = PaymasterSigner("0x" + "a1" * 32)
BENEFICIARY = "0x" + "be" * 20
SEL_GET_HASH = selector(f"getHash({PACKED_USEROP_TYPE},uint48,uint48,uint128,bytes)")
EPS = [pytest.param(V07, id="v07"), pytest.param(V08, id="v08"), pytest.param(V09, id="v09")]


@pytest.fixture(scope="module")
def paymasters(chain):
    return sponsor_paymasters(chain.url, SIGNER.address, deposit=10**18)


def sponsored(chain, acct, paymaster: str, *, terms: Terms | None = None, chain_id: int | None = None,
              entry_point: str | None = None, signer: PaymasterSigner = SIGNER, **op_changes):
    """acct's op (a call to a random address) with paymaster fields signed as given, then signed by
    the account owner."""
    op = acct.op(acct.execute("0x" + os.urandom(20).hex(), 0, b"\x01"), **op_changes).with_changes(
        paymaster=paymaster, paymaster_verification_gas_limit=60_000, paymaster_post_op_gas_limit=0)
    terms = terms or Terms(valid_until=now(chain) + 600)
    digest = sponsor_hash(op, terms, chain_id=chain_id or chain.chain_id, entry_point=entry_point or acct.ep.address,
                          paymaster=paymaster)
    op = op.with_changes(paymaster_data=encode_paymaster_data(terms, signer.sign(digest)))
    return acct.sign(op, chain.chain_id)


def now(chain) -> int:
    return int(latest_block(chain.url)["timestamp"], 16)


@pytest.mark.parametrize("ep", EPS)
def test_get_hash_matches_the_service(chain, paymasters, ep):
    acct = chain.account(ep, deployed=False, funded=0)
    op = acct.op(b"\x12\x34").with_changes(paymaster=paymasters[ep.version], paymaster_verification_gas_limit=1,
                                           paymaster_post_op_gas_limit=2, paymaster_data=b"")
    terms = Terms(valid_until=123456, valid_after=7, cost_limit=10**15, signature_prefix=b"\x01" + b"\xab" * 20)
    out = eth_call(chain.url, paymasters[ep.version], SEL_GET_HASH + encode(
        [PACKED_USEROP_TYPE, "uint48", "uint48", "uint128", "bytes"],
        [pack(op), terms.valid_until, terms.valid_after, terms.cost_limit, terms.signature_prefix]))
    assert decode(["bytes32"], out)[0] == sponsor_hash(
        op, terms, chain_id=chain.chain_id, entry_point=ep.address, paymaster=paymasters[ep.version])


@pytest.mark.parametrize("ep", EPS)
def test_sponsors_an_unfunded_counterfactual_account(chain, paymasters, ep):
    acct = chain.account(ep, deployed=False, funded=0)
    deposit_before = entry_point_deposit(chain.url, ep, paymasters[ep.version])
    op = sponsored(chain, acct, paymasters[ep.version])
    receipt = send_handle_ops(chain.url, ep, [op], BENEFICIARY)
    assert receipt["status"] == "0x1"
    (event,) = user_operation_events(receipt)
    assert event["success"] and acct.is_deployed()
    assert entry_point_deposit(chain.url, ep, paymasters[ep.version]) == deposit_before - event["actualGasCost"]


@pytest.mark.parametrize("ep", EPS)
def test_signature_binding(chain, paymasters, ep):
    pm = paymasters[ep.version]
    acct = chain.account(ep, deployed=True, funded=0)
    other_ep = V08 if ep is not V08 else V07

    # a signature for one op does not pay for another (same sender, other nonce key / calldata)
    good = sponsored(chain, acct, pm)
    other = acct.sign(good.with_changes(call_data=acct.execute("0x" + os.urandom(20).hex(), 0)), chain.chain_id)
    assert simulate_failure(chain.url, ep, [other]).reason == "AA34 signature error"
    # ...nor with other gas fields (the paymaster gas limits included)
    more_gas = acct.sign(good.with_changes(paymaster_verification_gas_limit=70_000), chain.chain_id)
    assert simulate_failure(chain.url, ep, [more_gas]).reason == "AA34 signature error"
    # other chain, other EntryPoint, other signer
    for bad in (sponsored(chain, acct, pm, chain_id=chain.chain_id + 1),
                sponsored(chain, acct, pm, entry_point=other_ep.address),
                sponsored(chain, acct, pm, signer=PaymasterSigner("0x" + "b2" * 32))):
        assert simulate_failure(chain.url, ep, [bad]).reason == "AA34 signature error"
    # after its window, and before it
    expired = sponsored(chain, acct, pm, terms=Terms(valid_until=now(chain) - 1))
    assert simulate_failure(chain.url, ep, [expired]).reason == "AA32 paymaster expired or not due"
    early = sponsored(chain, acct, pm, terms=Terms(valid_until=now(chain) + 3600, valid_after=now(chain) + 1800))
    assert simulate_failure(chain.url, ep, [early]).reason == "AA32 paymaster expired or not due"
    # a per-op cost cap below the op's maximum cost
    capped = sponsored(chain, acct, pm, terms=Terms(valid_until=now(chain) + 600, cost_limit=10**9))
    assert simulate_failure(chain.url, ep, [capped]).reason == "AA33 reverted"
    # the malleable twin of the good signature (high s, other v) is refused
    terms, sig = good.paymaster_data[:-65], good.paymaster_data[-65:]
    twin_s = SECP256K1_N - int.from_bytes(sig[32:64], "big")
    twin = sig[:32] + twin_s.to_bytes(32, "big") + bytes([55 - sig[64]])
    malleable = acct.sign(good.with_changes(paymaster_data=terms + twin), chain.chain_id)
    assert simulate_failure(chain.url, ep, [malleable]).reason == "AA34 signature error"
    # the stub's placeholder signature never pays
    stub = good.with_changes(paymaster_data=encode_paymaster_data(Terms(valid_until=now(chain) + 600), STUB_SIGNATURE))
    assert simulate_failure(chain.url, ep, [acct.sign(stub, chain.chain_id)]).reason == "AA34 signature error"
    # and the good one does, once
    receipt = send_handle_ops(chain.url, ep, [good], BENEFICIARY)
    assert receipt["status"] == "0x1" and user_operation_events(receipt)[0]["success"]
    assert simulate_failure(chain.url, ep, [good]).reason.startswith("AA25")  # nonce used


def test_signature_prefix_binds_the_account_signer(chain, paymasters):
    """A sponsorship made for session key K (prefix 0x01‖K) is refused when the op carries an
    owner signature (mode 0x00) or another key's, though the op is otherwise the same."""
    ep = V07
    acct = chain.account(ep, deployed=True, funded=0)
    key = Account.create()
    prefix = bytes([MODE_SESSION]) + bytes.fromhex(key.address[2:])
    op = acct.op(acct.execute(ANVIL_ACCOUNT0, 0)).with_changes(
        paymaster=paymasters["0.7"], paymaster_verification_gas_limit=60_000)
    terms = Terms(valid_until=now(chain) + 600, signature_prefix=prefix)
    op = op.with_changes(paymaster_data=encode_paymaster_data(terms, SIGNER.sign(sponsor_hash(
        op, terms, chain_id=chain.chain_id, entry_point=ep.address, paymaster=paymasters["0.7"]))))
    owner_signed = acct.sign(op, chain.chain_id)  # SimpleAccount: a bare 65-byte owner signature
    assert simulate_failure(chain.url, ep, [owner_signed]).reason == "AA34 signature error"


def sponsored_separately(chain, acct, paymaster: str, *, terms: Terms | None = None):
    """v0.9: (op signed by the account BEFORE the paymaster signed, the paymaster's signature).
    The account signs with a placeholder paymasterSignature: the userOpHash does not cover it."""
    op = acct.op(acct.execute("0x" + os.urandom(20).hex(), 0, b"\x01")).with_changes(
        paymaster=paymaster, paymaster_verification_gas_limit=60_000, paymaster_post_op_gas_limit=0)
    terms = terms or Terms(valid_until=now(chain) + 600)
    op = acct.sign(op.with_changes(paymaster_data=encode_terms(terms), paymaster_signature=STUB_SIGNATURE),
                   chain.chain_id)
    digest = sponsor_hash(op, terms, chain_id=chain.chain_id, entry_point=V09.address, paymaster=paymaster)
    return op, SIGNER.sign(digest)


def test_v09_separate_paymaster_signature(chain, paymasters):
    """The paymaster signs after the account (the account's signature stays valid); the stub's
    placeholder, a signature of another length and one for another op are refused."""
    pm = paymasters["0.9"]
    acct = chain.account(V09, deployed=False, funded=0)
    op, pm_sig = sponsored_separately(chain, acct, pm)
    assert simulate_failure(chain.url, V09, [op]).reason == "AA34 signature error"  # still the placeholder
    bad_length = op.with_changes(paymaster_signature=pm_sig + b"\x00")
    assert simulate_failure(chain.url, V09, [bad_length]).reason == "AA33 reverted"
    other, other_sig = sponsored_separately(chain, acct, pm)
    assert simulate_failure(chain.url, V09, [op.with_changes(paymaster_signature=other_sig)]).reason == \
        "AA34 signature error"
    # the same signature inside paymasterData (the v0.7/v0.8 layout) changes the userOpHash:
    # the account's signature no longer matches, though the paymaster's would
    inline = op.with_changes(paymaster_data=op.paymaster_data + pm_sig, paymaster_signature=b"")
    assert simulate_failure(chain.url, V09, [inline]).reason == "AA24 signature error"
    deposit_before = entry_point_deposit(chain.url, V09, pm)
    receipt = send_handle_ops(chain.url, V09, [op.with_changes(paymaster_signature=pm_sig)], BENEFICIARY)
    assert receipt["status"] == "0x1"
    (event,) = user_operation_events(receipt)
    assert event["success"] and acct.is_deployed()
    assert event["userOpHash"] == "0x" + V09.user_op_hash(op, chain.chain_id).hex()
    assert entry_point_deposit(chain.url, V09, pm) == deposit_before - event["actualGasCost"]
