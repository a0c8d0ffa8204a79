"""Session keys end to end: ops of SessionAccounts (v0.7 and v0.8 clones, and an EIP-7702
delegated EOA on v0.8) through eth_sendUserOperation of a real bundler on anvil, refusals with
the policy rule named, pending usage counted before anything is mined, revocation and expiry
dropping pending ops, and the session_* RPC methods.

The module runs its own anvil (it moves the chain's clock) with the EntryPoints and the
SessionAccount contracts at their dev addresses, and its own bundler (manual bundling).
"""
from __future__ import annotations

import asyncio
import time

import pytest
from eth_abi import encode
from eth_account import Account
from eth_utils import to_checksum_address

from bundler.entrypoint import V07, V08
from session_sdk.types import ArgConstraint, CallPolicy, Condition, Limit, SessionSpec, TransferPolicy, word
from session_sdk.signatures import DUMMY_ECDSA_SIGNATURE, encode_session_signature
from session_sdk.calldata import encode_execute, encode_grant_session, encode_revoke_session
from session_sdk.addresses import clone_runtime_code, delegation_code
from bundler.userop import format_user_operation
from conftest import RpcError
from helpers.sessions import (
    TEST_GAS,
    SessionAccountHandle, advance_time, block_timestamp, erc20_balance, erc20_mint,
    erc20_transfer, get_balance, get_code, new_key, rpc as node_rpc, selector, send_tx, set_balance, wait_receipt,
)
from helpers.session_fixtures import _running, account, bundler, chain, clean, rpc  # noqa: F401  (fixtures)

pytestmark = pytest.mark.asyncio
EPS = [pytest.param(V07, id="v0.7"), pytest.param(V08, id="v0.8")]
ETH = 10**18
HOUR = 3600
DAY = 86_400
SEL_TRANSFER = selector("transfer(address,uint256)")
SEL_APPROVE = selector("approve(address,uint256)")
SEL_DEPOSIT = selector("deposit()")
SEL_MINT = selector("mint(address,uint256)")


# ------------------------------------------------------------------ helpers


def recipient() -> str:
    return new_key()[1]


async def send(rpc, acct: SessionAccountHandle, op) -> str:
    return await rpc.call("eth_sendUserOperation", format_user_operation(op), acct.ep.address)


async def refused(rpc, acct: SessionAccountHandle, op, code: int) -> RpcError:
    with pytest.raises(RpcError) as e:
        await send(rpc, acct, op)
    assert e.value.code == code, e.value
    return e.value


async def grant_via_bundler(rpc, acct: SessionAccountHandle, spec: SessionSpec) -> None:
    """The owner grants the session with an owner op (mode 0x00) through the bundler."""
    op = acct.sign_owner(acct.build(encode_grant_session(spec)).with_changes(call_gas_limit=1_000_000))
    h = await send(rpc, acct, op)
    await rpc.call("debug_bundler_sendBundleNow")
    receipt = await rpc.call("eth_getUserOperationReceipt", h)
    assert receipt["success"] is True, receipt["reason"]


async def mined_ok(rpc, hashes: list[str]) -> None:
    await rpc.call("debug_bundler_sendBundleNow")
    for h in hashes:
        receipt = await rpc.call("eth_getUserOperationReceipt", h)
        assert receipt is not None and receipt["success"] is True, receipt


def session_call(acct, key, call_data: bytes, *, nonce: int | None = None, period: int = 0):
    return acct.sign_session(acct.build(call_data, nonce=nonce), key, period)


async def wait_dropped(rpc, op_hash: str, timeout: float = 10.0) -> RpcError:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            await rpc.call("eth_getUserOperationReceipt", op_hash)
        except RpcError as e:
            return e
        await asyncio.sleep(0.1)
    raise AssertionError(f"op {op_hash} was not dropped within {timeout} s")


def limit_item(info: dict, policy_index: int, constraint_index: int | None = None, scope: str | None = None) -> dict:
    for item in info["limits"]:
        if item["policyIndex"] == policy_index and item.get("constraintIndex") == constraint_index \
                and (scope is None or item["scope"] == scope):
            return item
    raise AssertionError(f"no limit {policy_index}/{constraint_index} in {info['limits']}")


# ------------------------------------------------------------------ a. backend key, any target, no value, 3 hours


@pytest.mark.parametrize("ep", EPS)
async def test_backend_key_any_target_no_value_three_hours(chain, rpc, clean, ep):
    acct = account(chain, ep)
    key, signer = new_key()
    now = block_timestamp(chain.url)
    spec = SessionSpec(gas=TEST_GAS, signer=signer, valid_after=now - 60, valid_until=now + 3 * HOUR,
                       call_policies=(CallPolicy(),))  # any target, any function, no ETH
    await grant_via_bundler(rpc, acct, spec)
    token = chain.sessions.token

    # a call succeeds (fast path: deployed clone, session mode, no paymaster)
    fast_before = clean.sessions.stats["fast"]
    mint = encode_execute(token, 0, SEL_MINT + encode(["address", "uint256"], [acct.address, 7]))
    h = await send(rpc, acct, session_call(acct, key, mint))
    assert clean.sessions.stats["fast"] == fast_before + 1
    await mined_ok(rpc, [h])
    assert erc20_balance(chain.url, token, acct.address) == 7

    # a call sending value is refused with the rule named
    err = await refused(rpc, acct, session_call(acct, key, encode_execute(token, 1, SEL_DEPOSIT)), -32500)
    assert err.data["rule"] == "SessionValueExceedsPerUse" and err.data["sessionKey"] == signer
    assert err.data["policyIndex"] == 0 and int(err.data["limit"], 16) == 0 and int(err.data["requested"], 16) == 1
    assert "value 1 wei exceeds the per-use maximum 0" in err.message and to_checksum_address(signer) in err.message
    # so is a plain ETH transfer: no transfer policy
    err = await refused(rpc, acct, session_call(acct, key, encode_execute(recipient(), 5)), -32500)
    assert err.data["rule"] == "SessionTransferNotAllowed"
    # and a call to the account itself
    err = await refused(rpc, acct, session_call(acct, key, encode_execute(acct.address, 0, encode_revoke_session(signer))), -32500)
    assert err.data["rule"] == "SessionSelfCallNotAllowed"

    info = await rpc.call("session_getSession", acct.address, signer)
    assert info["status"] == "active" and info["uses"]["used"] == 1
    assert info["spec"]["validUntil"] == now + 3 * HOUR

    # after expiry: -32503
    advance_time(chain.url, 3 * HOUR + 60)
    err = await refused(rpc, acct, session_call(acct, key, mint), -32503)
    assert err.data["rule"] == "SessionExpired" and "expired" in err.message
    info = await rpc.call("session_getSession", acct.address, signer)
    assert info["status"] == "expired"


# ------------------------------------------------------------------ b. EIP-7702 delegated EOA


def delegate_eoa(chain, eoa_key: str, implementation: str) -> None:
    """A type-4 transaction sent directly on anvil (sponsored by anvil's account 0) sets the
    EOA's code to the delegation designator."""
    from bundler.devchain.anvil import ANVIL_ACCOUNT0_KEY

    eoa = Account.from_key(eoa_key).address
    auth = Account.sign_authorization({"chainId": chain.chain_id, "address": implementation,
                                       "nonce": int(node_rpc(chain.url, "eth_getTransactionCount", [eoa, "latest"]), 16)},
                                      eoa_key)
    sponsor = Account.from_key(ANVIL_ACCOUNT0_KEY)
    base_fee = int(node_rpc(chain.url, "eth_getBlockByNumber", ["latest", False])["baseFeePerGas"], 16)
    tx = {"type": 4, "chainId": chain.chain_id, "to": eoa, "value": 0, "data": b"", "gas": 100_000,
          "nonce": int(node_rpc(chain.url, "eth_getTransactionCount", [sponsor.address, "pending"]), 16),
          "maxFeePerGas": 2 * base_fee + 10**9, "maxPriorityFeePerGas": 10**9, "authorizationList": [auth]}
    raw = sponsor.sign_transaction(tx).raw_transaction
    receipt = wait_receipt(chain.url, node_rpc(chain.url, "eth_sendRawTransaction", ["0x" + bytes(raw).hex()]))
    assert receipt["status"] == "0x1"


async def test_eip7702_eoa_with_call_and_transfer_policies(chain, rpc, clean):
    impl = chain.sessions.implementations["0.8"]
    token = chain.sessions.token
    eoa_key, eoa = new_key()
    set_balance(chain.url, eoa, 10 * ETH)
    erc20_mint(chain.url, token, eoa, 1000)
    delegate_eoa(chain, eoa_key, impl)
    assert get_code(chain.url, eoa) == delegation_code(impl)
    acct = SessionAccountHandle(chain.url, chain.chain_id, V08, eoa, eoa_key, verification_gas=400_000,
                                call_gas=200_000)
    payee = recipient()
    key, signer = new_key()
    spec = SessionSpec(
        gas=TEST_GAS, signer=signer,
        call_policies=(CallPolicy(target=token, selector=SEL_TRANSFER, constraints=(
            ArgConstraint(Condition.EQ, 0, word(payee)),
            ArgConstraint(Condition.LTE, 1, word(100), Limit.lifetime(250)),
        )),),
        transfer_policies=(TransferPolicy(target=payee, max_value_per_use=ETH // 10,
                                          value_limit=Limit.lifetime(ETH // 4)),),
    )
    await grant_via_bundler(rpc, acct, spec)  # the EOA's own key is the owner

    # call policy: target, selector, recipient == payee, amount <= 100, 250 in total
    h1 = await send(rpc, acct, session_call(acct, key, encode_execute(token, 0, erc20_transfer(payee, 100))))
    err = await refused(rpc, acct, session_call(acct, key, encode_execute(token, 0, erc20_transfer(recipient(), 1)),
                                                nonce=acct.nonce() + 1), -32500)
    assert err.data["rule"] == "SessionArgConstraintFailed" and err.data["constraintIndex"] == 0
    err = await refused(rpc, acct, session_call(acct, key, encode_execute(token, 0, erc20_transfer(payee, 101)),
                                                nonce=acct.nonce() + 1), -32500)
    assert err.data["rule"] == "SessionArgConstraintFailed" and err.data["constraintIndex"] == 1
    err = await refused(rpc, acct, session_call(acct, key, encode_execute(token, 0, SEL_APPROVE + word(payee) + word(1)),
                                                nonce=acct.nonce() + 1), -32500)
    assert err.data["rule"] == "SessionSelectorNotAllowed"
    # transfer policy: 0.1 ETH per use, 0.25 ETH in total
    h2 = await send(rpc, acct, session_call(acct, key, encode_execute(payee, ETH // 10), nonce=acct.nonce() + 1))
    err = await refused(rpc, acct, session_call(acct, key, encode_execute(payee, ETH // 10 + 1),
                                                nonce=acct.nonce() + 2), -32500)
    assert err.data["rule"] == "SessionTransferExceedsPerUse"
    h3 = await send(rpc, acct, session_call(acct, key, encode_execute(payee, ETH // 10), nonce=acct.nonce() + 2))
    # the third 0.1 ETH would make 0.3 > 0.25, counting the two still pending
    err = await refused(rpc, acct, session_call(acct, key, encode_execute(payee, ETH // 10),
                                                nonce=acct.nonce() + 3), -32500)
    assert err.data["rule"] == "SessionCumulativeLimitExceeded" and err.data["policyType"] == "transfer"
    assert [int(err.data[k], 16) for k in ("limit", "used", "pending", "requested")] == \
        [ETH // 4, 0, ETH // 5, ETH // 10]
    await mined_ok(rpc, [h1, h2, h3])
    assert erc20_balance(chain.url, token, payee) == 100 and get_balance(chain.url, payee) == ETH // 5
    # after mining the same op is refused with the usage on chain
    err = await refused(rpc, acct, session_call(acct, key, encode_execute(payee, ETH // 10)), -32500)
    assert [int(err.data[k], 16) for k in ("used", "pending")] == [ETH // 5, 0]
    info = await rpc.call("session_getSession", eoa, signer)
    assert info["accountType"] == "eip7702" and info["status"] == "active"
    assert int(limit_item(info, 0, 1)["remaining"], 16) == 150
    assert int(limit_item(info, 0, scope="transferValue")["remaining"], 16) == ETH // 20


# ------------------------------------------------------------------ c. remote party, revocation


async def test_revocation_seen_although_get_logs_failed_for_its_block(chain, rpc, clean, bundler):
    """The session watcher reads the revocation's block again when its eth_getLogs failed
    (injected twice), instead of skipping that block for good."""
    from bundler import faults

    acct = account(chain, V07)
    token = chain.sessions.token
    key, signer = new_key()
    now = block_timestamp(chain.url)
    spec = SessionSpec(gas=TEST_GAS, signer=signer, valid_after=now - 10, valid_until=now + DAY, call_policies=(
        CallPolicy(target=token, selector=SEL_DEPOSIT, max_value_per_use=ETH, value_limit=Limit.lifetime(2 * ETH)),))
    await grant_via_bundler(rpc, acct, spec)
    h = await send(rpc, acct, session_call(acct, key, encode_execute(token, ETH, SEL_DEPOSIT)))
    fired = faults.fired.get("sessions.get_logs", 0)
    faults.arm("sessions.get_logs", times=2)
    try:
        set_balance(chain.url, acct.owner, ETH)
        node_rpc(chain.url, "anvil_impersonateAccount", [acct.owner])
        send_tx(chain.url, acct.address, encode_revoke_session(signer), sender=acct.owner)  # one block, no more
        e = await wait_dropped(rpc, h, timeout=20)
        assert e.code == -32500 and "revoked" in e.message
    finally:
        faults.disarm("sessions.get_logs")
    assert faults.fired["sessions.get_logs"] - fired == 2


@pytest.mark.parametrize("ep", EPS)
async def test_remote_party_revoked_pending_dropped(chain, rpc, clean, ep):
    acct = account(chain, ep)
    token = chain.sessions.token
    key, signer = new_key()
    now = block_timestamp(chain.url)
    spec = SessionSpec(
        gas=TEST_GAS, signer=signer, valid_after=now - 10, valid_until=now + DAY,
        call_policies=(
            CallPolicy(target=token, selector=SEL_DEPOSIT, max_value_per_use=ETH,
                       value_limit=Limit.lifetime(2 * ETH)),
            CallPolicy(target=token, selector=SEL_APPROVE, constraints=(
                ArgConstraint(Condition.LTE, 1, word(500)),)),
        ),
    )
    await grant_via_bundler(rpc, acct, spec)
    start = acct.nonce()
    deposit = encode_execute(token, ETH, SEL_DEPOSIT)
    h1 = await send(rpc, acct, session_call(acct, key, deposit, nonce=start))
    h2 = await send(rpc, acct, session_call(acct, key, encode_execute(token, 0, SEL_APPROVE + word(recipient()) + word(500)),
                                            nonce=start + 1))
    err = await refused(rpc, acct, session_call(acct, key, encode_execute(recipient(), 0, SEL_APPROVE), nonce=start + 2),
                        -32500)
    assert err.data["rule"] == "SessionTargetNotAllowed"
    info = await rpc.call("session_getSession", acct.address, signer)
    assert info["pendingOps"] == [h1, h2]
    assert int(limit_item(info, 0, scope="callValue")["pending"], 16) == ETH

    # the owner revokes directly (a transaction from the owner's key to the account)
    set_balance(chain.url, acct.owner, ETH)
    node_rpc(chain.url, "anvil_impersonateAccount", [acct.owner])
    send_tx(chain.url, acct.address, encode_revoke_session(signer), sender=acct.owner)
    for h in (h1, h2):
        e = await wait_dropped(rpc, h)
        assert e.code == -32500 and "revoked" in e.message
    assert await rpc.call("debug_bundler_dumpMempool", ep.address) == []
    # new ops are refused
    err = await refused(rpc, acct, session_call(acct, key, deposit), -32500)
    assert err.data["rule"] == "SessionIsRevoked"
    info = await rpc.call("session_getSession", acct.address, signer)
    assert info["status"] == "revoked" and info["pendingOps"] == []
    activity = await rpc.call("session_getActivity", acct.address, signer)
    assert [a["userOpHash"] for a in activity] == [h1, h2]
    assert all(a["status"] == "dropped" and "revoked" in a["reason"] for a in activity)
    assert activity[0]["calls"] == [{"target": token, "value": hex(ETH), "data": "0x" + SEL_DEPOSIT.hex(),
                                     "function": "deposit"}]
    assert activity[0]["consumed"] == [{"scope": "callValue", "policyIndex": 0, "amount": hex(ETH)}]


# ------------------------------------------------------------------ d. validity window


@pytest.mark.parametrize("ep", EPS)
async def test_window_refused_before_accepted_during_refused_after(chain, rpc, clean, ep):
    acct = account(chain, ep)
    key, signer = new_key()
    now = block_timestamp(chain.url)
    spec = SessionSpec(gas=TEST_GAS, signer=signer, valid_after=now + 600, valid_until=now + 600 + HOUR,
                       transfer_policies=(TransferPolicy(max_value_per_use=1000),))
    await grant_via_bundler(rpc, acct, spec)
    call = encode_execute(recipient(), 10)
    err = await refused(rpc, acct, session_call(acct, key, call), -32503)
    assert err.data["rule"] == "SessionNotYetValid" and err.data["validAfter"] == now + 600
    assert "not valid yet" in err.message
    info = await rpc.call("session_getSession", acct.address, signer)
    assert info["status"] == "notYetValid"

    advance_time(chain.url, 700)
    h = await send(rpc, acct, session_call(acct, key, call))
    await mined_ok(rpc, [h])

    advance_time(chain.url, HOUR)
    err = await refused(rpc, acct, session_call(acct, key, call), -32503)
    assert err.data["rule"] == "SessionExpired"


# ------------------------------------------------------------------ e. one-click trading


def trading_spec(signer: str, token: str, limit: Limit, **kw) -> SessionSpec:
    return SessionSpec(gas=TEST_GAS, signer=signer, call_policies=(CallPolicy(target=token, selector=SEL_TRANSFER, constraints=(
        ArgConstraint(Condition.LTE, 1, word(2**256 - 1), limit),)),), **kw)


@pytest.mark.parametrize("ep", EPS)
async def test_one_click_trading_spending_limit_counts_pending_ops(chain, rpc, clean, ep):
    """Eleven transfers of 10 under a 100-token limit, all sent before anything is mined: ten
    are admitted (session accounts with a verified policy may queue up to 16 ops), the
    eleventh is refused with remaining 0 because of the ten pending ones."""
    acct = account(chain, ep)
    token = chain.sessions.token
    erc20_mint(chain.url, token, acct.address, 1000)
    key, signer = new_key()
    await grant_via_bundler(rpc, acct, trading_spec(signer, token, Limit.lifetime(100)))
    dex = recipient()
    start = acct.nonce()
    transfer = encode_execute(token, 0, erc20_transfer(dex, 10))
    hashes = [await send(rpc, acct, session_call(acct, key, transfer, nonce=start + i)) for i in range(10)]
    assert len(await rpc.call("debug_bundler_dumpMempool", ep.address)) == 10
    err = await refused(rpc, acct, session_call(acct, key, transfer, nonce=start + 10), -32500)
    assert err.data["rule"] == "SessionCumulativeLimitExceeded"
    assert {k: int(err.data[k], 16) for k in ("limit", "used", "pending", "requested", "remaining")} == \
        {"limit": 100, "used": 0, "pending": 100, "requested": 10, "remaining": 0}
    assert err.message.endswith('argument "amount" cumulative limit exceeded: limit 100, used 0, pending 100, '
                                "requested 10")
    assert f"session {to_checksum_address(signer)} policy 0 (ERC-20 {to_checksum_address(token)} transfer)" in err.message
    assert err.data["argument"] == "amount"
    info = await rpc.call("session_getSession", acct.address, signer)
    item = limit_item(info, 0, 0)
    assert (int(item["used"], 16), int(item["pending"], 16), int(item["remaining"], 16)) == (0, 100, 0)
    # not sending value is no way around it: a 0-amount transfer still passes (consumes nothing)
    h0 = await send(rpc, acct, session_call(acct, key, encode_execute(token, 0, erc20_transfer(dex, 0)),
                                            nonce=start + 10))

    await mined_ok(rpc, hashes + [h0])
    assert erc20_balance(chain.url, token, dex) == 100
    err = await refused(rpc, acct, session_call(acct, key, transfer), -32500)
    assert {k: int(err.data[k], 16) for k in ("used", "pending", "remaining")} == {"used": 100, "pending": 0,
                                                                                   "remaining": 0}
    activity = await rpc.call("session_getActivity", acct.address, signer)
    assert len(activity) == 11 and all(a["status"] == "mined" for a in activity)
    assert activity[0]["consumed"] == [{"scope": "callArgument", "policyIndex": 0, "constraintIndex": 0,
                                        "amount": hex(10)}]
    assert activity[0]["calls"][0]["function"] == "transfer"


@pytest.mark.parametrize("ep", EPS)
async def test_one_click_trading_daily_allowance_refills(chain, rpc, clean, ep):
    acct = account(chain, ep)
    token = chain.sessions.token
    erc20_mint(chain.url, token, acct.address, 1000)
    key, signer = new_key()
    now = block_timestamp(chain.url)
    spec = trading_spec(signer, token, Limit.allowance(100), valid_after=now - 100, valid_until=now + 30 * DAY,
                        period=DAY)
    await grant_via_bundler(rpc, acct, spec)
    dex = recipient()
    transfer = encode_execute(token, 0, erc20_transfer(dex, 40))
    start = acct.nonce()
    hashes = [await send(rpc, acct, session_call(acct, key, transfer, nonce=start + i, period=0)) for i in range(2)]
    err = await refused(rpc, acct, session_call(acct, key, transfer, nonce=start + 2, period=0), -32500)
    assert err.data["rule"] == "SessionCumulativeLimitExceeded" and err.data["limitKind"] == "allowance"
    assert {k: int(err.data[k], 16) for k in ("used", "pending", "remaining")} == {"used": 0, "pending": 80,
                                                                                   "remaining": 20}
    # tomorrow's allowance is not due yet
    err = await refused(rpc, acct, session_call(acct, key, transfer, nonce=start + 2, period=1), -32503)
    assert err.data["rule"] == "SessionNotYetValid"
    await mined_ok(rpc, hashes)

    advance_time(chain.url, DAY)
    # an op still signed for yesterday (within yesterday's allowance) is out of its time range
    small = encode_execute(token, 0, erc20_transfer(dex, 10))
    err = await refused(rpc, acct, session_call(acct, key, small, period=0), -32503)
    assert err.data["rule"] == "SessionExpired" and err.data["currentPeriod"] == 1
    h = await send(rpc, acct, session_call(acct, key, encode_execute(token, 0, erc20_transfer(dex, 100)),
                                           period=1))
    info = await rpc.call("session_getSession", acct.address, signer)
    assert info["currentPeriod"] == 1
    item = limit_item(info, 0, 0)
    assert item["periodIndex"] == 1 and (int(item["used"], 16), int(item["pending"], 16)) == (0, 100)
    await mined_ok(rpc, [h])
    assert erc20_balance(chain.url, token, dex) == 180
    # the counter is in period 1 now: an op for period 0 is refused by the account itself
    err = await refused(rpc, acct, session_call(acct, key, small, period=0), -32503)
    assert err.data["rule"] == "SessionPeriodExpired" and err.data["counterPeriodIndex"] == 1


# ------------------------------------------------------------------ enable mode, deployment, estimation


@pytest.mark.parametrize("ep", EPS)
async def test_enable_mode_in_the_deploying_op_then_session_ops(chain, rpc, clean, ep):
    acct = SessionAccountHandle.counterfactual(chain.url, chain.chain_id, ep, chain.sessions, salt=11)
    acct.verification_gas, acct.call_gas = 1_500_000, 200_000
    token = chain.sessions.token
    erc20_mint(chain.url, token, acct.address, 500)
    key, signer = new_key()
    dex = recipient()
    spec = trading_spec(signer, token, Limit.lifetime(100))
    # a spec the owner did not sign: signature error, before any simulation decides it
    bad = acct.sign_enable(acct.build(encode_execute(token, 0, erc20_transfer(dex, 60))), spec, key,
                           owner_key=new_key()[0])
    err = await refused(rpc, acct, bad, -32507)
    assert "owner" in err.message
    # over the limit in the very op that grants it
    over = acct.sign_enable(acct.build(encode_execute(token, 0, erc20_transfer(dex, 101))), spec, key)
    err = await refused(rpc, acct, over, -32500)
    assert err.data["rule"] == "SessionCumulativeLimitExceeded"
    full_before = clean.sessions.stats["full"]
    op = acct.sign_enable(acct.build(encode_execute(token, 0, erc20_transfer(dex, 60))), spec, key)
    h = await send(rpc, acct, op)
    assert clean.sessions.stats["full"] == full_before + 1  # deploy + enable: simulated
    await mined_ok(rpc, [h])
    acct.factory = None
    assert get_code(chain.url, acct.address) == clone_runtime_code(chain.sessions.implementations[ep.version])
    err = await refused(rpc, acct, session_call(acct, key, encode_execute(token, 0, erc20_transfer(dex, 41))),
                        -32500)
    assert {k: int(err.data[k], 16) for k in ("used", "requested", "remaining")} == {"used": 60, "requested": 41,
                                                                                     "remaining": 40}


@pytest.mark.parametrize("ep", EPS)
async def test_enable_op_pending_then_session_op_on_top(chain, rpc, clean, ep):
    """A deployed account: the enable-mode op is pending, a session-mode op of the same key
    follows it; the second is checked against the pending grant and its consumption."""
    acct = account(chain, ep)
    acct.verification_gas = 1_500_000
    token = chain.sessions.token
    erc20_mint(chain.url, token, acct.address, 500)
    key, signer = new_key()
    spec = trading_spec(signer, token, Limit.lifetime(100))
    start = acct.nonce()
    dex = recipient()
    h1 = await send(rpc, acct, acct.sign_enable(acct.build(encode_execute(token, 0, erc20_transfer(dex, 70))),
                                                spec, key))
    err = await refused(rpc, acct, session_call(acct, key, encode_execute(token, 0, erc20_transfer(dex, 31)),
                                                nonce=start + 1), -32500)
    assert {k: int(err.data[k], 16) for k in ("used", "pending", "requested")} == {"used": 0, "pending": 70,
                                                                                   "requested": 31}
    # within the limit: admitted on the fast path (a simulation against the chain alone would
    # refuse it: the session does not exist there until the enable op is mined)
    fast_before = clean.sessions.stats["fast"]
    h2 = await send(rpc, acct, session_call(acct, key, encode_execute(token, 0, erc20_transfer(dex, 30)),
                                            nonce=start + 1))
    assert clean.sessions.stats["fast"] == fast_before + 1
    await mined_ok(rpc, [h1, h2])
    assert erc20_balance(chain.url, token, dex) == 100


@pytest.mark.parametrize("ep", EPS)
async def test_gas_estimation_with_dummy_session_signature_checks_policy(chain, rpc, clean, ep):
    acct = account(chain, ep)
    token = chain.sessions.token
    erc20_mint(chain.url, token, acct.address, 1000)
    key, signer = new_key()
    await grant_via_bundler(rpc, acct, trading_spec(signer, token, Limit.lifetime(100)))
    dummy = encode_session_signature(signer, 0, DUMMY_ECDSA_SIGNATURE)
    dex = recipient()

    def unsigned(amount):
        return acct.build(encode_execute(token, 0, erc20_transfer(dex, amount))).with_changes(
            signature=dummy, call_gas_limit=0, verification_gas_limit=0, pre_verification_gas=0)

    est = await rpc.call("eth_estimateUserOperationGas", format_user_operation(unsigned(50)), ep.address)
    op = acct.sign_session(unsigned(50).with_changes(
        call_gas_limit=int(est["callGasLimit"], 16), verification_gas_limit=int(est["verificationGasLimit"], 16),
        pre_verification_gas=int(est["preVerificationGas"], 16)), key)
    fast_before = clean.sessions.stats["fast"]
    h = await send(rpc, acct, op)
    assert clean.sessions.stats["fast"] == fast_before + 1  # the estimate keeps the op on the fast path
    with pytest.raises(RpcError) as e:  # 50 pending + 60 > 100
        await rpc.call("eth_estimateUserOperationGas", format_user_operation(
            unsigned(60).with_changes(nonce=op.nonce + 1)), ep.address)
    assert e.value.code == -32500 and e.value.data["rule"] == "SessionCumulativeLimitExceeded"
    assert int(e.value.data["pending"], 16) == 50
    with pytest.raises(RpcError) as e:
        await rpc.call("eth_estimateUserOperationGas", format_user_operation(
            acct.build(encode_execute(token, 1, SEL_DEPOSIT)).with_changes(signature=dummy)), ep.address)
    assert e.value.code == -32500 and e.value.data["rule"] == "SessionSelectorNotAllowed"
    await mined_ok(rpc, [h])


async def test_wrong_session_signature_and_unknown_session(chain, rpc, clean):
    acct = account(chain, V07)
    key, signer = new_key()
    await grant_via_bundler(rpc, acct, SessionSpec(gas=TEST_GAS, signer=signer, wildcard=True))
    call = encode_execute(recipient(), 1)
    err = await refused(rpc, acct, acct.sign_session(acct.build(call), new_key()[0], signer=signer), -32507)
    assert to_checksum_address(signer) in err.message and err.data["sessionKey"] == signer
    other_key, other = new_key()
    err = await refused(rpc, acct, session_call(acct, other_key, call), -32500)
    assert err.data["rule"] == "SessionUnknown"
    err = await refused(rpc, acct, acct.build(call).with_changes(signature=b"\x01" + b"\x00" * 60), -32500)
    assert "AA23" in err.message  # not a session signature layout: the simulation says so


async def test_replacement_releases_the_replaced_ops_usage(chain, rpc, clean):
    acct = account(chain, V08)
    token = chain.sessions.token
    erc20_mint(chain.url, token, acct.address, 1000)
    key, signer = new_key()
    await grant_via_bundler(rpc, acct, trading_spec(signer, token, Limit.lifetime(100)))
    dex = recipient()
    first = session_call(acct, key, encode_execute(token, 0, erc20_transfer(dex, 90)))
    h1 = await send(rpc, acct, first)
    # replacing the 90 with a 100 (higher fees) counts only the replacement
    second = acct.sign_session(first.with_changes(
        call_data=encode_execute(token, 0, erc20_transfer(dex, 100)),
        max_fee_per_gas=first.max_fee_per_gas * 2, max_priority_fee_per_gas=first.max_priority_fee_per_gas * 2), key)
    h2 = await send(rpc, acct, second)
    info = await rpc.call("session_getSession", acct.address, signer)
    assert info["pendingOps"] == [h2] and int(limit_item(info, 0, 0)["pending"], 16) == 100
    e = await wait_dropped(rpc, h1, timeout=1)
    assert "replaced" in e.message
    await mined_ok(rpc, [h2])
    assert erc20_balance(chain.url, token, dex) == 100


async def test_session_rpc_errors(chain, rpc, clean):
    with pytest.raises(RpcError) as e:
        await rpc.call("session_getSession", "0x1234", new_key()[1])
    assert e.value.code == -32602
    with pytest.raises(RpcError) as e:  # a contract that is not a SessionAccount
        await rpc.call("session_getSession", chain.sessions.token, new_key()[1])
    assert e.value.code == -32602 and "not a SessionAccount" in e.value.message
    counterfactual = SessionAccountHandle.counterfactual(chain.url, chain.chain_id, V07, chain.sessions, salt=99)
    info = await rpc.call("session_getSession", counterfactual.address, new_key()[1])
    assert info["status"] == "unknown" and info["accountType"] == "counterfactual"
    assert await rpc.call("session_getActivity", counterfactual.address, new_key()[1]) == []
    acct = account(chain, V07)
    with pytest.raises(RpcError) as e:
        await rpc.call("session_getSession", acct.address, new_key()[1], V08.address)
    assert e.value.code == -32602 and "v0.7" in e.value.message
    info = await rpc.call("session_getSession", to_checksum_address(acct.address), new_key()[1], V07.address)
    assert info["status"] == "unknown" and info["spec"] is None


# ------------------------------------------------------------------ the watcher: expiry and a new grant


async def test_pending_ops_of_an_expiring_session_are_dropped(chain, rpc, clean):
    acct = account(chain, V07)
    key, signer = new_key()
    now = block_timestamp(chain.url)
    await grant_via_bundler(rpc, acct, SessionSpec(gas=TEST_GAS, signer=signer, valid_until=now + 120,
                                                   transfer_policies=(TransferPolicy(max_value_per_use=100),)))
    h = await send(rpc, acct, session_call(acct, key, encode_execute(recipient(), 1)))
    advance_time(chain.url, 200)  # a new block past validUntil, nothing bundled meanwhile
    e = await wait_dropped(rpc, h)
    assert e.code == -32503 and "expired" in e.message
    activity = await rpc.call("session_getActivity", acct.address, signer)
    assert activity[0]["status"] == "dropped" and activity[0]["errorCode"] == -32503


async def test_a_new_grant_rechecks_pending_ops(chain, rpc, clean):
    acct = account(chain, V08)
    token = chain.sessions.token
    erc20_mint(chain.url, token, acct.address, 1000)
    key, signer = new_key()
    await grant_via_bundler(rpc, acct, trading_spec(signer, token, Limit.lifetime(100)))
    dex = recipient()
    start = acct.nonce()
    h1 = await send(rpc, acct, session_call(acct, key, encode_execute(token, 0, erc20_transfer(dex, 40)),
                                            nonce=start))
    h2 = await send(rpc, acct, session_call(acct, key, encode_execute(token, 0, erc20_transfer(dex, 40)),
                                            nonce=start + 1))
    # the owner replaces the session directly: 50 tokens in total from now on
    set_balance(chain.url, acct.owner, ETH)
    node_rpc(chain.url, "anvil_impersonateAccount", [acct.owner])
    send_tx(chain.url, acct.address, encode_grant_session(trading_spec(signer, token, Limit.lifetime(50))),
            sender=acct.owner)
    e = await wait_dropped(rpc, h2)
    assert e.code == -32500 and "granted anew" in e.message and "cumulative limit exceeded" in e.message
    info = await rpc.call("session_getSession", acct.address, signer)
    assert info["pendingOps"] == [h1] and int(limit_item(info, 0, 0)["remaining"], 16) == 10
    await mined_ok(rpc, [h1])
