"""An attacker holding nothing but a session key (issue 8), through the real interfaces: the
bundler's eth_sendUserOperation on anvil, and a handleOps transaction the attacker sends itself,
naming itself beneficiary (the contract alone must hold). Each attack must gain nothing.

  gas          a session without any ETH allowance signs an op with a huge preVerificationGas and
               maxFeePerGas == maxPriorityFeePerGas: refused by the bundler naming the gas rule,
               reverted on chain (AA23), the account's balance intact; the cumulative gas budget
               counts pending ops; a paymaster the grant does not list is refused
  protected    "any contract, no ETH" and wildcard sessions against EntryPoint.withdrawTo,
               withdrawStake, unlockStake, incrementNonce and the implementation
  gas bound    an unused 80-constraint policy and a 100-call batch: the fast path's bound is
               enough on chain (mined with verificationGasLimit = the bound)
  typed        NEQ on a recipient address bypassed with a dirty upper byte
  7702         an EOA that delegates away and back does not get its old grants back
"""
from __future__ import annotations

import pytest
from eth_abi import encode
from eth_account import Account

from bundler.devchain.anvil import ANVIL_ACCOUNT0
from bundler.entrypoint import V07, V08
from session_sdk.types import (
    ZERO_ADDRESS, ArgConstraint, ArgType, CallPolicy, Condition, GasPolicy, Limit, Scope, SessionSpec, word,
)
from session_sdk.signatures import SessionSignature
from session_sdk.calldata import (
    SEL_DEPOSIT_TO, Call, encode_execute, encode_execute_batch, encode_grant_session, encode_revoke_all_sessions,
)
from session_sdk.addresses import delegation_code
from bundler.sessions.gas import validation_gas_bound
from bundler.sessions.policy import OpFacts, SessionState, evaluate
from bundler.userop import format_user_operation
from conftest import RpcError
from helpers.sessions import (
    TEST_GAS, SessionAccountHandle, decode_failed_op, erc20_balance, eth_call,
    get_balance, get_code, handle_ops, handle_ops_calldata, new_key, rpc as node_rpc, selector, send_tx,
    send_tx_status, set_balance, set_delegation, simulate_failure,
)
from helpers.session_fixtures import _running, account, bundler, chain, clean, rpc  # noqa: F401  (fixtures)

pytestmark = pytest.mark.asyncio
EPS = [pytest.param(V07, id="v0.7"), pytest.param(V08, id="v0.8")]
ETH = 10**18
GWEI = 10**9
SEL_MINT = selector("mint(address,uint256)")
SEL_TRANSFER = selector("transfer(address,uint256)")
SEL_WITHDRAW_TO = selector("withdrawTo(address,uint256)")
SEL_WITHDRAW_STAKE = selector("withdrawStake(address)")
SEL_UNLOCK_STAKE = selector("unlockStake()")
SEL_INCREMENT_NONCE = selector("incrementNonce(uint192)")
SEL_ADD_STAKE = selector("addStake(uint32)")
SEL_BALANCE_OF = selector("balanceOf(address)")


# ------------------------------------------------------------------ helpers


def attacker(chain) -> str:
    """A funded address the attacker controls (impersonated on anvil)."""
    _, address = new_key()
    set_balance(chain.url, address, ETH)
    node_rpc(chain.url, "anvil_impersonateAccount", [address])
    return address


async def send(rpc, acct, op) -> str:
    return await rpc.call("eth_sendUserOperation", format_user_operation(op), acct.ep.address)


async def refused(rpc, acct, op, rule: str, code: int = -32500) -> RpcError:
    with pytest.raises(RpcError) as e:
        await send(rpc, acct, op)
    assert e.value.code == code, e.value
    assert (e.value.data or {}).get("rule") == rule, (e.value, e.value.data)
    return e.value


async def grant(rpc, acct, spec: SessionSpec) -> None:
    op = acct.sign_owner(acct.build(encode_grant_session(spec)).with_changes(
        call_gas_limit=8_000_000, pre_verification_gas=400_000))
    h = await send(rpc, acct, op)
    await rpc.call("debug_bundler_sendBundleNow")
    receipt = await rpc.call("eth_getUserOperationReceipt", h)
    assert receipt["success"] is True, receipt


def owner_exec(acct, target: str, value: int, data: bytes) -> None:
    [res] = handle_ops(acct.url, acct.ep, [acct.sign_owner(acct.build(encode_execute(target, value, data)))])
    assert res.success, res.revert_reason.hex()


def self_bundled(chain, acct, op, beneficiary: str) -> tuple:
    """The attacker's own handleOps naming itself beneficiary: (FailedOp of the eth_call, status of
    the real transaction)."""
    failed = simulate_failure(chain.url, acct.ep, [op])
    status = send_tx_status(chain.url, acct.ep.address, handle_ops_calldata([op], beneficiary), beneficiary)
    return failed, status


def deposit_of(chain, ep, who: str) -> int:
    return int.from_bytes(eth_call(chain.url, ep.address, SEL_BALANCE_OF + encode(["address"], [who])), "big")


# ------------------------------------------------------------------ 1. gas is value


@pytest.mark.parametrize("ep", EPS)
async def test_gas_drain_by_a_self_bundling_session_key_fails(chain, rpc, clean, ep):
    acct = account(chain, ep)  # 10 ETH
    token = chain.sessions.token
    key, signer = new_key()
    # any contract, no ETH at all; gas: 0.01 ETH per op, 0.003 ETH over the session's life
    await grant(rpc, acct, SessionSpec(signer=signer, call_policies=(CallPolicy(),), gas=GasPolicy(
        max_cost_per_op=10**16, cost_limit=Limit.lifetime(3 * 10**15))))
    thief = attacker(chain)
    mint = encode_execute(token, 0, SEL_MINT + encode(["address", "uint256"], [thief, 1]))
    greedy = acct.sign_session(acct.build(mint).with_changes(
        pre_verification_gas=2_500_000, max_fee_per_gas=3000 * GWEI, max_priority_fee_per_gas=3000 * GWEI), key)
    cost = greedy.max_cost()
    assert cost > 9 * ETH
    err = await refused(rpc, acct, greedy, "SessionGasCostExceedsPerOp")
    assert "gas" in err.message and int(err.data["limit"], 16) == 10**16 and int(err.data["requested"], 16) == cost

    balance, deposit = get_balance(chain.url, acct.address), deposit_of(chain, ep, acct.address)
    thief_before = get_balance(chain.url, thief)
    failed, status = self_bundled(chain, acct, greedy, thief)
    assert failed.reason == "AA23 reverted" and failed.error.name == "SessionGasCostExceedsPerOp"
    assert failed.error.args == (cost, 10**16)
    assert status == "0x0"
    assert get_balance(chain.url, acct.address) == balance and deposit_of(chain, ep, acct.address) == deposit
    assert get_balance(chain.url, thief) < thief_before  # it paid for its reverted transaction

    # the cumulative budget counts the pending op: 1.98e15 pending + 1.98e15 > 3e15
    first = acct.sign_session(acct.build(mint), key)
    h = await send(rpc, acct, first)
    second = acct.sign_session(acct.build(mint, nonce=first.nonce + 1), key)
    err = await refused(rpc, acct, second, "SessionCumulativeLimitExceeded")
    assert err.data["scope"] == "gasCost" and "gas budget" in err.message
    assert (int(err.data["limit"], 16), int(err.data["used"], 16), int(err.data["pending"], 16),
            int(err.data["requested"], 16)) == (3 * 10**15, 0, first.max_cost(), second.max_cost())
    info = await rpc.call("session_getSession", acct.address, signer)
    budget = info["gas"]["budget"]
    assert info["gas"]["maxCostPerOp"] == hex(10**16) and info["gas"]["paymasters"] == []
    assert (budget["pending"], budget["remaining"]) == (hex(first.max_cost()), hex(3 * 10**15 - first.max_cost()))
    await rpc.call("debug_bundler_sendBundleNow")
    assert (await rpc.call("eth_getUserOperationReceipt", h))["success"] is True
    budget = (await rpc.call("session_getSession", acct.address, signer))["gas"]["budget"]
    assert (budget["used"], budget["pending"]) == (hex(first.max_cost()), "0x0")
    # and on chain, bundled by the attacker itself
    failed, status = self_bundled(chain, acct, second, thief)
    assert failed.error.name == "SessionCumulativeLimitExceeded" and status == "0x0"
    assert failed.error.args == (0, Scope.GAS, 0, 0, first.max_cost(), second.max_cost(), 3 * 10**15)

    # a paymaster the grant does not list (a token paymaster would spend the owner's tokens)
    sponsored = acct.sign_session(acct.build(mint, nonce=first.nonce + 1).with_changes(
        paymaster=token, paymaster_verification_gas_limit=100_000, paymaster_post_op_gas_limit=50_000), key)
    err = await refused(rpc, acct, sponsored, "SessionPaymasterNotAllowed")
    assert err.data["paymaster"] == token
    failed, status = self_bundled(chain, acct, sponsored, thief)
    assert failed.error.name == "SessionPaymasterNotAllowed" and status == "0x0"


# ------------------------------------------------------------------ 2. protected targets


@pytest.mark.parametrize("ep", EPS)
async def test_entry_point_and_implementation_are_out_of_reach(chain, rpc, clean, ep):
    acct = account(chain, ep)
    owner_exec(acct, ep.address, ETH, SEL_ADD_STAKE + encode(["uint32"], [1]))  # a stake ...
    send_tx(chain.url, ep.address, SEL_DEPOSIT_TO + encode(["address"], [acct.address]), value=2 * ETH)
    key_any, any_contract = new_key()
    key_wild, wildcard = new_key()
    await grant(rpc, acct, SessionSpec(signer=any_contract, call_policies=(CallPolicy(),), gas=TEST_GAS))
    await grant(rpc, acct, SessionSpec(signer=wildcard, wildcard=True, gas=TEST_GAS))
    deposit = deposit_of(chain, ep, acct.address)  # ... and a deposit
    assert deposit >= ETH
    thief = attacker(chain)
    impl = chain.sessions.implementations[ep.version]
    attacks = {
        "withdrawTo": (ep.address, SEL_WITHDRAW_TO + encode(["address", "uint256"], [thief, deposit])),
        "withdrawStake": (ep.address, SEL_WITHDRAW_STAKE + encode(["address"], [thief])),
        "unlockStake": (ep.address, SEL_UNLOCK_STAKE),
        "incrementNonce": (ep.address, SEL_INCREMENT_NONCE + encode(["uint192"], [7])),
        "depositTo(thief)": (ep.address, SEL_DEPOSIT_TO + encode(["address"], [thief])),
        "other EntryPoint": ((V08 if ep is V07 else V07).address, SEL_WITHDRAW_TO + encode(["address", "uint256"], [thief, 1])),
        "implementation": (impl, encode_revoke_all_sessions()),
    }
    for key in (key_any, key_wild):
        for name, (target, data) in attacks.items():
            op = acct.sign_session(acct.build(encode_execute(target, 0, data)), key)
            err = await refused(rpc, acct, op, "SessionProtectedTarget")
            assert err.data["target"] == target.lower(), name
            failed, status = self_bundled(chain, acct, op, thief)
            assert failed.reason == "AA23 reverted" and failed.error.name == "SessionProtectedTarget", name
            assert failed.error.args == (0, target.lower()) and status == "0x0", name
        # hidden in a batch behind an allowed call
        batch = encode_execute_batch([Call(thief, 0, SEL_MINT + bytes(64)),
                                      Call(ep.address, 0, attacks["withdrawTo"][1])])
        failed, _ = self_bundled(chain, acct, acct.sign_session(acct.build(batch), key), thief)
        assert failed.error.args == (1, ep.address.lower())
    assert deposit_of(chain, ep, acct.address) == deposit
    nonce_key_7 = node_rpc(chain.url, "eth_call", [{"to": ep.address, "data": "0x" + (
        selector("getNonce(address,uint192)") + encode(["address", "uint192"], [acct.address, 7])).hex()}, "latest"])
    assert int(nonce_key_7, 16) == 7 << 64  # incrementNonce never ran
    # depositTo(the account) stays allowed: it moves nothing out of the account's reach
    op = acct.sign_session(acct.build(encode_execute(
        ep.address, 0, SEL_DEPOSIT_TO + encode(["address"], [acct.address]))), key_any)
    h = await send(rpc, acct, op)
    await rpc.call("debug_bundler_sendBundleNow")
    assert (await rpc.call("eth_getUserOperationReceipt", h))["success"] is True


# ------------------------------------------------------------------ 4. the fast path's bound


async def test_unused_80_constraint_policy_and_100_call_batch_mined_at_the_bound(chain, rpc, clean):
    ep = V07
    acct = account(chain, ep)
    token = chain.sessions.token
    key, signer = new_key()
    unused = CallPolicy(target="0x" + "e1" * 20, selector=SEL_TRANSFER, constraints=tuple(
        ArgConstraint(Condition.LTE, i, word(2**256 - 1)) for i in range(80)))
    spec = SessionSpec(signer=signer, gas=TEST_GAS, call_policies=(unused, CallPolicy(target=token, selector=SEL_MINT)))
    await grant(rpc, acct, spec)
    calls = [Call(token, 0, SEL_MINT + encode(["address", "uint256"], [acct.address, i])) for i in range(100)]
    call_data = encode_execute_batch(calls)
    state = SessionState.fresh(spec, 1)
    draft = acct.build(call_data).with_changes(pre_verification_gas=500_000, call_gas_limit=3_000_000)
    ev = evaluate(acct.address, state, SessionSignature(signer, 0, b""), call_data, (),
                  OpFacts.of(draft, ep.address, chain.sessions.implementations[ep.version]))
    bound = validation_gas_bound(ev, len(call_data), fresh_nonce=False, pays_prefund=True, fresh_deposit=True)
    assert bound < 1_500_000  # the old code needed ~7M here: its memory grew with the unused policy
    op = acct.sign_session(draft.with_changes(verification_gas_limit=bound), key)
    fast = clean.sessions.stats["fast"]
    h = await send(rpc, acct, op)
    assert clean.sessions.stats["fast"] == fast + 1  # admitted on the fast path, at the bound
    await rpc.call("debug_bundler_sendBundleNow")
    receipt = await rpc.call("eth_getUserOperationReceipt", h)
    assert receipt is not None and receipt["success"] is True, receipt
    assert erc20_balance(chain.url, token, acct.address) == sum(range(100))


# ------------------------------------------------------------------ 6. typed constraints


@pytest.mark.parametrize("ep", EPS)
async def test_neq_on_a_recipient_is_not_bypassed_with_dirty_upper_bytes(chain, rpc, clean, ep):
    acct = account(chain, ep)
    token = chain.sessions.token
    banned = new_key()[1]
    key, signer = new_key()
    await grant(rpc, acct, SessionSpec(signer=signer, gas=TEST_GAS, call_policies=(CallPolicy(
        target=token, selector=SEL_MINT, constraints=(
            ArgConstraint.typed(Condition.NEQ, 0, "address", banned),
            ArgConstraint.typed(Condition.LTE, 1, "uint96", 100))),)))
    dirty = b"\x01" + bytes(11) + bytes.fromhex(banned[2:])  # a v1-coder token would read `banned`
    op = acct.sign_session(acct.build(encode_execute(token, 0, SEL_MINT + dirty + word(5))), key)
    err = await refused(rpc, acct, op, "SessionArgNotCanonical")
    assert err.data["argType"] == "address" and err.data["actual"] == "0x" + dirty.hex()
    # the signature is checked before the policy: a stranger's op earns no policy evaluation
    forged = acct.sign_session(acct.build(encode_execute(token, 0, SEL_MINT + dirty + word(5))), new_key()[0],
                               signer=signer)
    with pytest.raises(RpcError) as e:
        await send(rpc, acct, forged)
    assert e.value.code == -32507 and "rule" not in (e.value.data or {})
    failed, status = self_bundled(chain, acct, op, attacker(chain))
    assert failed.error.name == "SessionArgNotCanonical" and status == "0x0"
    assert failed.error.args == (0, 0, 0, ArgType.ADDRESS, dirty)
    # a uint96 amount with bits above 96 is refused the same way
    wide = word((1 << 200) | 5)
    op = acct.sign_session(acct.build(encode_execute(token, 0, SEL_MINT + word(new_key()[1]) + wide)), key)
    assert (await refused(rpc, acct, op, "SessionArgNotCanonical")).data["argType"] == "uint96"
    # the clean encoding of an allowed recipient passes
    ok = acct.sign_session(acct.build(encode_execute(token, 0, SEL_MINT + word(acct.address) + word(5))), key)
    h = await send(rpc, acct, ok)
    await rpc.call("debug_bundler_sendBundleNow")
    assert (await rpc.call("eth_getUserOperationReceipt", h))["success"] is True
    assert erc20_balance(chain.url, token, banned) == 0


# ------------------------------------------------------------------ 8. EIP-7702 re-delegation


async def test_delegating_away_and_back_does_not_revive_old_grants(chain, rpc, clean):
    ep = V08
    impl = chain.sessions.implementations["0.8"]
    token = chain.sessions.token
    eoa_key, eoa = new_key()
    set_balance(chain.url, eoa, 10 * ETH)
    set_delegation(chain.url, chain.chain_id, eoa_key, impl)
    acct = SessionAccountHandle(chain.url, chain.chain_id, ep, eoa, eoa_key, delegate=impl,
                                verification_gas=400_000, call_gas=200_000)
    key, signer = new_key()
    spec = SessionSpec(signer=signer, gas=TEST_GAS, call_policies=(CallPolicy(target=token, selector=SEL_MINT),))
    await grant(rpc, acct, spec)
    mint = encode_execute(token, 0, SEL_MINT + encode(["address", "uint256"], [eoa, 1]))
    h = await send(rpc, acct, acct.sign_session(acct.build(mint), key))
    await rpc.call("debug_bundler_sendBundleNow")
    assert (await rpc.call("eth_getUserOperationReceipt", h))["success"] is True
    assert acct.epoch() == 0

    def delegate_away():
        set_delegation(chain.url, chain.chain_id, eoa_key, ZERO_ADDRESS)  # a plain EOA again
        assert get_code(chain.url, eoa) == b""

    # (a) back through the bundler: an owner op carrying the EIP-7702 authorization
    delegate_away()
    auth = Account.sign_authorization({"chainId": chain.chain_id, "address": impl, "nonce": int(
        node_rpc(chain.url, "eth_getTransactionCount", [eoa, "latest"]), 16)}, eoa_key)
    back = acct.sign_owner(acct.build(encode_execute(eoa, 0, b""), eip7702_init=True).with_changes(
        eip7702_auth=abi_authorization(auth)))
    h = await send(rpc, acct, back)
    await rpc.call("debug_bundler_sendBundleNow")
    assert (await rpc.call("eth_getUserOperationReceipt", h))["success"] is True
    assert get_code(chain.url, eoa) == delegation_code(impl) and acct.epoch() == 1
    old = acct.sign_session(acct.build(mint), key)
    await refused(rpc, acct, old, "SessionIsRevoked")
    failed, status = self_bundled(chain, acct, old, attacker(chain))
    assert failed.error.name == "SessionIsRevoked" and status == "0x0"
    info = await rpc.call("session_getSession", eoa, signer)
    assert info["status"] == "revoked"
    # a session key cannot carry a (re)delegation itself
    fresh = Account.sign_authorization({"chainId": chain.chain_id, "address": impl, "nonce": int(
        node_rpc(chain.url, "eth_getTransactionCount", [eoa, "latest"]), 16)}, eoa_key)
    carried = acct.sign_session(acct.build(mint, eip7702_init=True).with_changes(eip7702_auth=abi_authorization(fresh)), key)
    await refused(rpc, acct, carried, "SessionDelegationNotAllowed")

    # (b) a fresh grant works; then away and back with a bare type-4 transaction that calls
    # revokeAllSessions() in the same transaction (the documented way back outside the bundler)
    await grant(rpc, acct, spec)
    h = await send(rpc, acct, acct.sign_session(acct.build(mint), key))
    await rpc.call("debug_bundler_sendBundleNow")
    assert (await rpc.call("eth_getUserOperationReceipt", h))["success"] is True
    delegate_away()
    set_delegation(chain.url, chain.chain_id, eoa_key, impl, data=encode_revoke_all_sessions(), self_sent=True)
    assert acct.epoch() == 2
    old = acct.sign_session(acct.build(mint), key)
    await refused(rpc, acct, old, "SessionIsRevoked")
    failed, status = self_bundled(chain, acct, old, attacker(chain))
    assert failed.error.name == "SessionIsRevoked" and status == "0x0"


def abi_authorization(signed) -> "object":
    from bundler.userop import Authorization

    # eth-account gives the delegate as 20 bytes (bytes.lower() would rewrite bytes 0x41-0x5a)
    address = signed.address if isinstance(signed.address, str) else "0x" + bytes(signed.address).hex()
    return Authorization(chain_id=signed.chain_id, address=address.lower(), nonce=signed.nonce,
                         y_parity=signed.y_parity, r=signed.r, s=signed.s)
