"""SessionAccount (contracts/) on a real anvil chain through the real EntryPoints v0.7 and v0.8:
owner ops, session grants and policy enforcement during validation, cumulative and refilling
limits, enable-and-use in the deploying op, revocation, EIP-7702 delegation, ERC-7562 hygiene
of the validation code, and the Python ABI mirror (the session SDK's types, signatures, eip712,
calldata, events and reverts modules) against the contract.

The module runs its own anvil (it moves the clock), deploys the EntryPoints at their canonical
addresses and our contracts through the CREATE2 deployer.
"""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
from eth_abi import decode, encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_hash.auto import keccak

from bundler import contracts_build
from bundler.devchain import deploy_all, start_anvil
from bundler.entrypoint import V07, V08
from session_sdk.types import (
    SESSION_SPEC_T, UINT256_MAX, ArgConstraint, CallPolicy, Condition, GasPolicy, Limit, Scope, SessionSpec, Status,
    TransferPolicy, decode_spec, encode_spec, word,
)
from session_sdk.rules import SIG_VALIDATION_FAILED, period_window, unpack_validation_data
from session_sdk.eip712 import eip712_spec_digest, eip712_typed_data, spec_struct_hash
from session_sdk.signatures import (
    SECP256K1_N, SessionSignature, decode_signature, encode_enable_signature, encode_session_signature,
)
from session_sdk.calldata import (
    CALL_T, SEL_EXECUTE, SEL_EXECUTE_BATCH, SEL_GRANT_SESSION, SEL_REVOKE_SESSION, Call, encode_create_account,
    encode_execute, encode_execute_batch, encode_grant_session, encode_revoke_all_sessions, encode_revoke_session,
)
from session_sdk.addresses import clone_runtime_code, delegation_code, implementation_of
from session_sdk.events import (
    EVENT_SESSION_GRANTED, EVENT_SESSION_REVOKED, EVENT_SESSION_USED, TOPIC_SESSION_GRANTED, TOPIC_SESSION_REVOKED,
    Consumption,
)
from session_sdk.reverts import ERRORS, decode_error
from helpers.sessions import (
    TEST_GAS,
    SessionAccountHandle, advance_time, block_timestamp, call_validate, deploy_session_contracts, erc20_balance,
    erc20_mint, erc20_transfer, eth_call, get_balance, get_code, handle_ops, handle_ops_with_authorizations,
    new_key, rpc, RpcError, selector, session_events, set_balance, simulate_failure,
    validation_trace_call,
)

ETH = 10**18
SEL_TRANSFER = selector("transfer(address,uint256)")
SEL_APPROVE = selector("approve(address,uint256)")
SEL_DEPOSIT = selector("deposit()")
SEL_MINT = selector("mint(address,uint256)")
RECIPIENT = "0x" + "a1" * 20
STRANGER = "0x" + "b2" * 20


@pytest.fixture(scope="module")
def env():
    node = start_anvil()
    try:
        node.deployment = deploy_all(node.url)
        node.sessions = deploy_session_contracts(node.url)
        yield node
    finally:
        node.stop()


def token_of(env) -> str:
    return env.sessions.token


def policy_spec(signer: str, token: str, **overrides) -> SessionSpec:
    """transfer(RECIPIENT, 0 < amount <= 1000) with 1500 lifetime; deposit() up to 1 ETH/use, 1.5 ETH
    lifetime; approve(nonzero spender, 10 <= amount < 100); ETH to RECIPIENT up to 0.5/use, 1
    lifetime."""
    values = dict(
        gas=TEST_GAS, signer=signer,
        call_policies=(
            CallPolicy(target=token, selector=SEL_TRANSFER, constraints=(
                ArgConstraint(Condition.EQ, 0, word(RECIPIENT)),
                ArgConstraint(Condition.LTE, 1, word(1000), Limit.lifetime(1500)),
                ArgConstraint(Condition.GT, 1, word(0)),
            )),
            CallPolicy(target=token, selector=SEL_DEPOSIT, max_value_per_use=ETH,
                       value_limit=Limit.lifetime(3 * ETH // 2)),
            CallPolicy(target=token, selector=SEL_APPROVE, constraints=(
                ArgConstraint(Condition.NEQ, 0, word(0)),
                ArgConstraint(Condition.GTE, 1, word(10)),
                ArgConstraint(Condition.LT, 1, word(100)),
            )),
        ),
        transfer_policies=(
            TransferPolicy(target=RECIPIENT, max_value_per_use=ETH // 2, value_limit=Limit.lifetime(ETH)),
        ),
    )
    values.update(overrides)
    return SessionSpec(**values)


def grant(acct: SessionAccountHandle, spec: SessionSpec) -> None:
    [res] = handle_ops(acct.url, acct.ep, [acct.sign_owner(acct.build(encode_grant_session(spec)))])
    assert res.success, res.revert_reason.hex()


def session_op(acct, key, call_data: bytes, period: int = 0):
    return acct.sign_session(acct.build(call_data), key, period)


def expect_session_error(acct, op, name: str, args: tuple | None = None):
    failed = simulate_failure(acct.url, acct.ep, [op])
    assert failed.reason == "AA23 reverted", failed
    err = failed.error
    assert err is not None, f"not a SessionAccount error: {failed.inner.hex()}"
    assert err.name == name, str(err)
    if args is not None:
        assert err.args == args, str(err)
    return err


# ------------------------------------------------------------------ ABI mirror


def test_python_abi_matches_compiled_contract(env):
    artifact = contracts_build.load_contract("SessionAccount")

    def canonical(t: dict) -> str:
        if t["type"].startswith("tuple"):
            return "(" + ",".join(canonical(c) for c in t["components"]) + ")" + t["type"][5:]
        return t["type"]

    errors = {e["name"]: [canonical(i) for i in e["inputs"]] for e in artifact["abi"] if e["type"] == "error"}
    assert errors == ERRORS
    events = {e["name"]: f"{e['name']}({','.join(canonical(i) for i in e['inputs'])})"
              for e in artifact["abi"] if e["type"] == "event"}
    assert events["SessionGranted"] == EVENT_SESSION_GRANTED
    assert events["SessionRevoked"] == EVENT_SESSION_REVOKED
    assert events["SessionUsed"] == EVENT_SESSION_USED
    functions = {f"{f['name']}({','.join(canonical(i) for i in f['inputs'])})"
                 for f in artifact["abi"] if f["type"] == "function"}
    for sig, sel in [("execute(address,uint256,bytes)", SEL_EXECUTE),
                     (f"executeBatch({CALL_T}[])", SEL_EXECUTE_BATCH),
                     (f"grantSession({SESSION_SPEC_T})", SEL_GRANT_SESSION),
                     ("revokeSession(address)", SEL_REVOKE_SESSION)]:
        assert sig in functions and selector(sig) == sel


def test_spec_encoding_and_eip712_digest_match_contract(env):
    acct = SessionAccountHandle.create(env.url, env.chain_id, V07, env.sessions)
    _, signer = new_key()
    spec = policy_spec(signer, token_of(env), valid_after=5, valid_until=10**9, period=3600, usage_limit=7,
                       wildcard=False)
    # every v2 field: typed constraints (signed, sized, bytesN), a gas budget with paymasters
    spec = replace(spec, call_policies=spec.call_policies + (CallPolicy(target=RECIPIENT, constraints=(
        ArgConstraint.typed(Condition.GTE, 2, "int24", -5), ArgConstraint.typed(Condition.EQ, 0, "bytes4", b"\x12\x34\x56\x78"),
        ArgConstraint.typed(Condition.LT, 1, "uint96", 10**20, Limit.allowance(10**21)),
        ArgConstraint.typed(Condition.EQ, 3, "bool", 1))),),
                   gas=GasPolicy(max_cost_per_op=123, cost_limit=Limit.allowance(456), paymasters=("0x" + "77" * 20, RECIPIENT)))
    assert decode_spec(encode_spec(spec)) == spec
    # in epoch 1 (every session of epoch 0 revoked at once by the owner)
    [res] = handle_ops(acct.url, acct.ep, [acct.sign_owner(acct.build(encode_revoke_all_sessions()))])
    assert res.success and acct.epoch() == 1
    # the contract's EIP-712 digest == ours, and the typed-data JSON a wallet signs hashes to it
    digest = acct.call(f"enableDigest({SESSION_SPEC_T},uint64)", [SESSION_SPEC_T, "uint64"],
                       [spec.to_abi(), 42], ["bytes32"])[0]
    assert digest == eip712_spec_digest(spec, 42, acct.address, env.chain_id, 1)
    signable = encode_typed_data(full_message=json.loads(json.dumps(
        eip712_typed_data(spec, 42, acct.address, env.chain_id, 1))))
    assert digest == keccak(b"\x19" + signable.version + signable.header + signable.body)
    spec_hash = acct.call(f"specHash({SESSION_SPEC_T})", [SESSION_SPEC_T], [spec.to_abi()], ["bytes32"])[0]
    assert spec_hash == spec_struct_hash(spec)
    # granted and read back unchanged; the signature encoders round-trip
    grant(acct, spec)
    stored, status, nonce, count = acct.get_session(signer)
    assert (stored, status, nonce, count) == (spec, Status.ACTIVE, 1, 0)
    sig65 = bytes(range(65))
    assert decode_signature(encode_session_signature(signer, 9, sig65)) == \
        SessionSignature(signer, 9, sig65)
    enable = decode_signature(encode_enable_signature(spec, 3, sig65, 4, sig65[::-1]))
    assert (enable.spec, enable.nonce, enable.period_index, enable.signature) == (spec, 3, 4, sig65[::-1])


# ------------------------------------------------------------------ owner


@pytest.mark.parametrize("ep", [V07, V08], ids=["v07", "v08"])
def test_owner_op_deploys_account_and_executes(env, ep):
    acct = SessionAccountHandle.counterfactual(env.url, env.chain_id, ep, env.sessions)
    op = acct.sign_owner(acct.build(encode_execute_batch([Call(RECIPIENT, 1234), Call(STRANGER, 66)])))
    [res] = handle_ops(env.url, ep, [op])
    assert res.success and res.sender == acct.address
    # recognisable code: the ERC-1167 clone of this EntryPoint's implementation
    code = get_code(env.url, acct.address)
    assert code == clone_runtime_code(env.sessions.implementations[ep.version])
    assert implementation_of(code) == env.sessions.implementations[ep.version]
    assert acct.call("owner()", [], [], ["address"])[0].lower() == acct.owner
    # a wrong owner signature is a signature failure (AA24), not a revert
    acct.factory = None
    bad = acct.sign_owner(acct.build(encode_execute(RECIPIENT, 1)), key=new_key()[0])
    assert simulate_failure(env.url, ep, [bad]).reason == "AA24 signature error"


def test_access_control(env):
    acct = SessionAccountHandle.create(env.url, env.chain_id, V07, env.sessions)
    stranger = new_key()[1]
    for data in [encode_execute(RECIPIENT, 1), encode_revoke_session(stranger),
                 encode_grant_session(SessionSpec(gas=TEST_GAS, signer=stranger, wildcard=True))]:
        with pytest.raises(RpcError) as e:
            eth_call(env.url, acct.address, data, sender=stranger)
        assert decode_error(e.value.data).name == "NotAuthorized"
    # the owner may call directly
    eth_call(env.url, acct.address, encode_execute(RECIPIENT, 1), sender=acct.owner)
    # validateUserOp only from the EntryPoint
    op = acct.sign_owner(acct.build(b""))
    call = validation_trace_call(V07, op, acct.op_hash(op))
    with pytest.raises(RpcError) as e:
        rpc(env.url, "eth_call", [{**call, "from": stranger}, "latest"])
    assert decode_error(e.value.data).name == "NotFromEntryPoint"
    # nobody can (re)initialise a deployed clone or the implementation
    for target in (acct.address, env.sessions.implementations["0.7"]):
        with pytest.raises(RpcError) as e:
            eth_call(env.url, target, selector("initialize(address)") + encode(["address"], [stranger]))
        assert decode_error(e.value.data).name == "InitializeOnlyDuringConstruction"
    # malformed signature -> revert (AA23 InvalidSignatureFormat), not a signature failure
    op = acct.build(encode_execute(RECIPIENT, 1))
    for sig in (b"", b"\x00" * 10, b"\x01" + b"\x00" * 50, b"\x07" + b"\x00" * 65):
        expect_session_error(acct, op.with_changes(signature=sig), "InvalidSignatureFormat")


# ------------------------------------------------------------------ sessions within and outside policy


@pytest.fixture(scope="module")
def policy_account(env):
    """A v0.7 account holding tokens, with the policy_spec session granted and one in-policy
    batch already executed: transfer 400, deposit 0.5 ETH, approve 50, 0.25 ETH to RECIPIENT."""
    acct = SessionAccountHandle.create(env.url, env.chain_id, V07, env.sessions)
    key, signer = new_key()
    erc20_mint(env.url, token_of(env), acct.address, 10_000)
    spec = policy_spec(signer, token_of(env))
    grant(acct, spec)
    token = token_of(env)
    before = get_balance(env.url, RECIPIENT)
    batch = encode_execute_batch([
        Call(token, 0, erc20_transfer(RECIPIENT, 400)),
        Call(token, ETH // 2, SEL_DEPOSIT),
        Call(token, 0, SEL_APPROVE + encode(["address", "uint256"], [RECIPIENT, 50])),
        Call(RECIPIENT, ETH // 4),
    ])
    [res] = handle_ops(env.url, V07, [session_op(acct, key, batch)])
    return dict(acct=acct, key=key, signer=signer, spec=spec, result=res, eth_before=before)


def test_session_op_within_policy(env, policy_account):
    acct, signer, res = policy_account["acct"], policy_account["signer"], policy_account["result"]
    assert res.success, res.revert_reason.hex()
    token = token_of(env)
    assert erc20_balance(env.url, token, RECIPIENT) >= 400
    assert erc20_balance(env.url, token, acct.address) == 10_000 - 400 + ETH // 2
    assert get_balance(env.url, RECIPIENT) - policy_account["eth_before"] == ETH // 4
    [used] = session_events(res, acct.address)
    assert (used.signer, used.period_index, used.usage_count) == (signer, 0, 1)
    assert used.consumed == (
        Consumption(Scope.CALL_ARG, 0, 1, 400),
        Consumption(Scope.CALL_VALUE, 1, 0, ETH // 2),
        Consumption(Scope.TRANSFER_VALUE, 0, 0, ETH // 4),
    )
    count, call_value, call_args, transfer_value, gas_cost = acct.get_usage(signer)
    assert gas_cost == (0, 0)  # no cumulative gas budget in this spec
    assert count == 1
    assert call_value == ((0, 0), (0, ETH // 2), (0, 0))
    assert call_args == (((0, 0), (0, 400), (0, 0)), (), ((0, 0), (0, 0), (0, 0)))
    assert transfer_value == ((0, ETH // 4),)
    assert acct.remaining(signer, Scope.CALL_ARG, 0, 1) == 1100
    assert acct.remaining(signer, Scope.CALL_VALUE, 1) == ETH
    assert acct.remaining(signer, Scope.CALL_VALUE, 0) == UINT256_MAX  # no limit
    assert acct.remaining(signer, Scope.TRANSFER_VALUE, 0) == 3 * ETH // 4


def _violations(token: str, account: str):
    transfer_word_to = word(RECIPIENT)
    return [
        ("target", encode_execute(STRANGER, 0, erc20_transfer(RECIPIENT, 1)),
         "SessionTargetNotAllowed", (0, STRANGER)),
        ("selector", encode_execute(token, 0, SEL_MINT + encode(["address", "uint256"], [RECIPIENT, 1])),
         "SessionSelectorNotAllowed", (0, token, SEL_MINT)),
        ("value-per-use", encode_execute(token, 2 * ETH, SEL_DEPOSIT),
         "SessionValueExceedsPerUse", (0, 1, 2 * ETH, ETH)),
        ("value-on-nonpayable-policy", encode_execute(token, 1, erc20_transfer(RECIPIENT, 1)),
         "SessionValueExceedsPerUse", (0, 0, 1, 0)),
        ("arg-eq", encode_execute(token, 0, erc20_transfer(STRANGER, 1)),
         "SessionArgConstraintFailed", (0, 0, 0, Condition.EQ, word(STRANGER), transfer_word_to)),
        ("arg-lte", encode_execute(token, 0, erc20_transfer(RECIPIENT, 1001)),
         "SessionArgConstraintFailed", (0, 0, 1, Condition.LTE, word(1001), word(1000))),
        ("arg-gt", encode_execute(token, 0, erc20_transfer(RECIPIENT, 0)),
         "SessionArgConstraintFailed", (0, 0, 2, Condition.GT, word(0), word(0))),
        ("arg-lt", encode_execute(token, 0, SEL_APPROVE + encode(["address", "uint256"], [RECIPIENT, 100])),
         "SessionArgConstraintFailed", (0, 2, 2, Condition.LT, word(100), word(100))),
        ("arg-gte", encode_execute(token, 0, SEL_APPROVE + encode(["address", "uint256"], [RECIPIENT, 5])),
         "SessionArgConstraintFailed", (0, 2, 1, Condition.GTE, word(5), word(10))),
        ("arg-neq", encode_execute(token, 0, SEL_APPROVE + encode(["address", "uint256"], ["0x" + "00" * 20, 50])),
         "SessionArgConstraintFailed", (0, 2, 0, Condition.NEQ, word(0), word(0))),
        ("arg-missing", encode_execute(token, 0, SEL_TRANSFER + word(RECIPIENT)),
         "SessionArgOutOfBounds", (0, 0, 1, 1)),
        ("cumulative-value", encode_execute_batch([Call(token, 6 * ETH // 10, SEL_DEPOSIT),
                                                        Call(token, 6 * ETH // 10, SEL_DEPOSIT)]),
         "SessionCumulativeLimitExceeded",
         (1, Scope.CALL_VALUE, 1, 0, ETH // 2 + 6 * ETH // 10, 6 * ETH // 10, 3 * ETH // 2)),
        ("cumulative-arg", encode_execute_batch([Call(token, 0, erc20_transfer(RECIPIENT, 1000)),
                                                      Call(token, 0, erc20_transfer(RECIPIENT, 101))]),
         "SessionCumulativeLimitExceeded", (1, Scope.CALL_ARG, 0, 1, 1400, 101, 1500)),
        ("transfer-target", encode_execute(STRANGER, 1),
         "SessionTransferNotAllowed", (0, STRANGER)),
        ("transfer-per-use", encode_execute(RECIPIENT, ETH // 2 + 1),
         "SessionTransferExceedsPerUse", (0, 0, ETH // 2 + 1, ETH // 2)),
        ("transfer-cumulative", encode_execute_batch([Call(RECIPIENT, ETH // 2), Call(RECIPIENT, ETH // 2)]),
         "SessionCumulativeLimitExceeded", (1, Scope.TRANSFER_VALUE, 0, 0, 3 * ETH // 4, ETH // 2, ETH)),
        ("short-calldata", encode_execute(token, 0, b"\x01\x02"), "SessionInvalidCallData", (0,)),
        ("self-call", encode_execute(account, 0, encode_revoke_session(RECIPIENT)),
         "SessionSelfCallNotAllowed", (0,)),
        ("self-call-in-batch", encode_execute_batch([Call(RECIPIENT, 1), Call(account, 0, b"")]),
         "SessionSelfCallNotAllowed", (1,)),
        ("not-execute", encode_revoke_session(RECIPIENT),
         "SessionCallNotAllowed", (SEL_REVOKE_SESSION,)),
    ]


VIOLATION_IDS = [v[0] for v in _violations("0x" + "00" * 20, "0x" + "00" * 20)]


@pytest.mark.parametrize("case", VIOLATION_IDS)
def test_session_policy_violation_is_rejected_in_validation(env, policy_account, case):
    acct, key = policy_account["acct"], policy_account["key"]
    [(_, call_data, name, args)] = [v for v in _violations(token_of(env), acct.address) if v[0] == case]
    expect_session_error(acct, session_op(acct, key, call_data), name, args)


def test_session_signature_and_identity_failures(env, policy_account):
    acct, key, signer = policy_account["acct"], policy_account["key"], policy_account["signer"]
    call = encode_execute(RECIPIENT, 1)
    other_key, other = new_key()
    # unknown session key
    expect_session_error(acct, session_op(acct, other_key, call), "SessionUnknown", (other,))
    # known session, wrong key: signature failure (AA24), and validationData's low bits == 1
    op = acct.sign_session(acct.build(call), other_key, signer=signer)
    assert simulate_failure(env.url, V07, [op]).reason == "AA24 signature error"
    vd = call_validate(env.url, V07, op, acct.op_hash(op))
    assert unpack_validation_data(vd) == (SIG_VALIDATION_FAILED, 0, 0)
    # a high-s (malleable) copy of a valid signature is refused too
    good = acct.sign_session(acct.build(call), key)
    r, s, v = good.signature[27:59], int.from_bytes(good.signature[59:91], "big"), good.signature[91]
    flipped = encode_session_signature(signer, 0, r + (SECP256K1_N - s).to_bytes(32, "big")
                                       + bytes([55 - v]))
    assert simulate_failure(env.url, V07, [good.with_changes(signature=flipped)]).reason == "AA24 signature error"
    assert call_validate(env.url, V07, good, acct.op_hash(good)) == 0
    # the session has no period: any other period index is outside the window
    expect_session_error(acct, session_op(acct, key, call, period=1), "SessionPeriodOutsideWindow", (signer, 1))


# ------------------------------------------------------------------ cumulative and usage limits


def test_cumulative_erc20_limit(env):
    acct = SessionAccountHandle.create(env.url, env.chain_id, V08, env.sessions)
    token = token_of(env)
    erc20_mint(env.url, token, acct.address, 1000)
    key, signer = new_key()
    grant(acct, SessionSpec(gas=TEST_GAS, signer=signer, call_policies=(
        CallPolicy(target=token, selector=SEL_TRANSFER,
                   constraints=(ArgConstraint(Condition.LTE, 1, word(100), Limit.lifetime(100)),)),
    )))

    def send(amount):
        return session_op(acct, key, encode_execute(token, 0, erc20_transfer(RECIPIENT, amount)))

    [res] = handle_ops(env.url, V08, [send(60)])
    assert res.success
    expect_session_error(acct, send(50), "SessionCumulativeLimitExceeded", (0, Scope.CALL_ARG, 0, 0, 60, 50, 100))
    [res] = handle_ops(env.url, V08, [send(40)])
    assert res.success
    assert acct.remaining(signer, Scope.CALL_ARG, 0, 0) == 0
    expect_session_error(acct, send(1), "SessionCumulativeLimitExceeded", (0, Scope.CALL_ARG, 0, 0, 100, 1, 100))
    # a zero amount consumes nothing and still passes
    [res] = handle_ops(env.url, V08, [send(0)])
    assert res.success
    assert erc20_balance(env.url, token, acct.address) == 900


def test_usage_limit_and_wildcard(env):
    acct = SessionAccountHandle.create(env.url, env.chain_id, V07, env.sessions)
    key, signer = new_key()
    grant(acct, SessionSpec(gas=TEST_GAS, signer=signer, wildcard=True, usage_limit=2))
    token = token_of(env)
    mint = encode_execute(token, 0, SEL_MINT + encode(["address", "uint256"], [acct.address, 5]))
    # wildcard: any target and selector, ETH too; never the account itself
    expect_session_error(acct, session_op(acct, key, encode_execute(acct.address, 0, b"")),
                         "SessionSelfCallNotAllowed", (0,))
    for call in (mint, encode_execute(STRANGER, 7)):
        [res] = handle_ops(env.url, V07, [session_op(acct, key, call)])
        assert res.success
        assert session_events(res, acct.address)[0].consumed == ()
    assert acct.call("remainingUses(address)", ["address"], [signer], ["uint32"])[0] == 0
    expect_session_error(acct, session_op(acct, key, mint), "SessionUsageLimitReached", (signer, 2))


# ------------------------------------------------------------------ refilling allowance


def test_refilling_allowance_across_periods(env):
    period = 3600
    acct = SessionAccountHandle.create(env.url, env.chain_id, V07, env.sessions)
    token = token_of(env)
    erc20_mint(env.url, token, acct.address, 10_000)
    key, signer = new_key()
    now = block_timestamp(env.url)
    start = now - 100
    spec = SessionSpec(gas=TEST_GAS, signer=signer, valid_after=start, valid_until=start + 10 * period - 1, period=period,
                       call_policies=(CallPolicy(target=token, selector=SEL_TRANSFER, constraints=(
                           ArgConstraint(Condition.LTE, 1, word(2**255), Limit.allowance(100)),)),))
    grant(acct, spec)
    p = acct.call("currentPeriod(address)", ["address"], [signer], ["uint48"])[0]
    assert p == 0

    def send(amount, period_index):
        return session_op(acct, key, encode_execute(token, 0, erc20_transfer(RECIPIENT, amount)), period_index)

    # the op's period bounds come back as validAfter/validUntil (no clock read in validation)
    op = send(80, 0)
    assert unpack_validation_data(call_validate(env.url, V07, op, acct.op_hash(op))) == \
        (0, start, start + period - 1)
    assert period_window(spec, 0) == (start, start + period - 1)
    assert acct.call("periodBounds(address,uint48)", ["address", "uint48"], [signer, 3], ["uint48", "uint48"]) == \
        (start + 3 * period, start + 4 * period - 1)
    [res] = handle_ops(env.url, V07, [op])
    assert res.success
    expect_session_error(acct, send(30, 0), "SessionCumulativeLimitExceeded", (0, Scope.CALL_ARG, 0, 0, 80, 30, 100))
    # the next period's allowance exists but is not due yet: the EntryPoint refuses the range
    assert simulate_failure(env.url, V07, [send(90, 1)]).reason == "AA22 expired or not due"
    # exactly ten periods fit in the session window; past them, no period fits
    assert unpack_validation_data(call_validate(env.url, V07, send(1, 9), acct.op_hash(send(1, 9))))[1:] == \
        (start + 9 * period, start + 10 * period - 1)
    expect_session_error(acct, send(1, 10), "SessionPeriodOutsideWindow", (signer, 10))

    advance_time(env.url, period)
    assert acct.call("currentPeriod(address)", ["address"], [signer], ["uint48"])[0] == 1
    # an op still naming period 0 is now out of its range
    assert simulate_failure(env.url, V07, [send(10, 0)]).reason == "AA22 expired or not due"
    [res] = handle_ops(env.url, V07, [send(90, 1)])  # refilled: 90 <= 100 although 80 were used before
    assert res.success
    assert session_events(res, acct.address)[0].period_index == 1
    assert acct.get_usage(signer)[2] == (((1, 90),),)
    assert acct.remaining(signer, Scope.CALL_ARG, 0, 0, 1) == 10
    assert acct.remaining(signer, Scope.CALL_ARG, 0, 0, 2) == 100
    # the counter is at period 1 now: period 0 is rejected by the account itself
    expect_session_error(acct, send(1, 0), "SessionPeriodExpired", (0, 1))
    expect_session_error(acct, send(11, 1), "SessionCumulativeLimitExceeded", (0, Scope.CALL_ARG, 0, 0, 90, 11, 100))


# ------------------------------------------------------------------ enable mode, revocation


@pytest.mark.parametrize("ep", [V07, V08], ids=["v07", "v08"])
def test_enable_mode_in_the_deploying_op(env, ep):
    acct = SessionAccountHandle.counterfactual(env.url, env.chain_id, ep, env.sessions, salt=7)
    acct.verification_gas = 2_000_000
    token = token_of(env)
    erc20_mint(env.url, token, acct.address, 500)
    key, signer = new_key()
    spec = policy_spec(signer, token, usage_limit=10)
    call = encode_execute(token, 0, erc20_transfer(RECIPIENT, 100))
    # a bad owner signature over the spec is a signature failure, nothing is granted
    bad = acct.sign_enable(acct.build(call), spec, key, owner_key=new_key()[0])
    assert simulate_failure(env.url, ep, [bad]).reason == "AA24 signature error"

    op = acct.sign_enable(acct.build(call), spec, key, nonce=0)
    [res] = handle_ops(env.url, ep, [op])
    assert res.success, res.revert_reason.hex()
    acct.factory = None
    assert get_code(env.url, acct.address) == clone_runtime_code(env.sessions.implementations[ep.version])
    assert erc20_balance(env.url, token, acct.address) == 400
    stored, status, nonce, count = acct.get_session(signer)
    assert (stored, status, nonce, count) == (spec, Status.ACTIVE, 1, 1)
    granted = [log for log in res.logs if bytes.fromhex(log["topics"][0][2:]) == TOPIC_SESSION_GRANTED]
    assert len(granted) == 1
    g_nonce, g_hash, g_spec = decode(["uint64", "bytes32", SESSION_SPEC_T], bytes.fromhex(granted[0]["data"][2:]))
    assert (g_nonce, g_hash, SessionSpec.from_abi(g_spec)) == (1, spec_struct_hash(spec), spec)
    # replaying the enable signature fails: the grant nonce moved on
    replay = acct.sign_enable(acct.build(call), spec, key, nonce=0)
    expect_session_error(acct, replay, "SessionEnableNonceMismatch", (signer, 0, 1))
    # plain session mode from now on
    [res] = handle_ops(env.url, ep, [session_op(acct, key, call)])
    assert res.success


def test_revoke_and_regrant(env):
    acct = SessionAccountHandle.create(env.url, env.chain_id, V08, env.sessions)
    acct.verification_gas = 2_000_000
    key, signer = new_key()
    spec = SessionSpec(gas=TEST_GAS, signer=signer, transfer_policies=(TransferPolicy(max_value_per_use=ETH),))
    grant(acct, spec)
    call = encode_execute(RECIPIENT, 5)
    [res] = handle_ops(env.url, V08, [session_op(acct, key, call)])
    assert res.success
    old_enable = acct.sign_enable(acct.build(call), spec, key, nonce=acct.grant_nonce(signer))

    [res] = handle_ops(env.url, V08, [acct.sign_owner(acct.build(encode_revoke_session(signer)))])
    assert res.success
    revoked = [log for log in res.logs if bytes.fromhex(log["topics"][0][2:]) == TOPIC_SESSION_REVOKED]
    assert len(revoked) == 1 and decode(["uint64"], bytes.fromhex(revoked[0]["data"][2:]))[0] == 2
    assert acct.get_session(signer)[1:3] == (Status.REVOKED, 2)
    expect_session_error(acct, session_op(acct, key, call), "SessionIsRevoked", (signer,))
    # an enable signature made before the revocation is dead
    expect_session_error(acct, old_enable.with_changes(nonce=acct.nonce()), "SessionEnableNonceMismatch",
                         (signer, 1, 2))
    # the owner can grant again (fresh counters), here by enable mode with the current nonce
    op = acct.sign_enable(acct.build(call), spec, key, nonce=2)
    [res] = handle_ops(env.url, V08, [op])
    assert res.success
    assert acct.get_session(signer)[1:] == (Status.ACTIVE, 3, 1)


# ------------------------------------------------------------------ EIP-7702


def test_eip7702_delegated_eoa_with_session(env):
    impl = env.sessions.implementations["0.8"]
    token = token_of(env)
    eoa_key, eoa = new_key()
    set_balance(env.url, eoa, 10 * ETH)
    erc20_mint(env.url, token, eoa, 1000)
    auth = Account.sign_authorization({"chainId": env.chain_id, "address": impl, "nonce": 0}, eoa_key)
    acct = SessionAccountHandle(env.url, env.chain_id, V08, eoa, eoa_key, delegate=impl)
    key, signer = new_key()
    spec = SessionSpec(gas=TEST_GAS, signer=signer, call_policies=(CallPolicy(target=token, selector=SEL_TRANSFER, constraints=(
        ArgConstraint(Condition.EQ, 0, word(RECIPIENT)), ArgConstraint(Condition.LTE, 1, word(2**256 - 1),
                                                                        Limit.lifetime(300)))),))
    # first op: the authorization rides in the bundle's type-4 transaction; the EOA's own key
    # (the owner of a delegated EOA) grants the session
    op = acct.sign_owner(acct.build(encode_grant_session(spec), eip7702_init=True))
    [res] = handle_ops_with_authorizations(env.url, env.chain_id, V08, [op], [auth])
    assert res.success, res.revert_reason.hex()
    code = get_code(env.url, eoa)
    assert code == delegation_code(impl) and implementation_of(code) == impl
    assert acct.call("owner()", [], [], ["address"])[0].lower() == eoa
    # then a session op from the delegated EOA
    [res] = handle_ops(env.url, V08, [session_op(acct, key, encode_execute(token, 0, erc20_transfer(RECIPIENT, 250)))])
    assert res.success
    assert erc20_balance(env.url, token, eoa) == 750
    expect_session_error(acct, session_op(acct, key, encode_execute(token, 0, erc20_transfer(RECIPIENT, 51))),
                         "SessionCumulativeLimitExceeded", (0, Scope.CALL_ARG, 0, 1, 250, 51, 300))
    # storage stays in the ERC-7201 namespace; nobody can initialise the EOA with another owner
    for slot in (0, 1, 2):
        assert int(rpc(env.url, "eth_getStorageAt", [eoa, hex(slot), "latest"]), 16) == 0
    with pytest.raises(RpcError) as e:
        eth_call(env.url, eoa, selector("initialize(address)") + encode(["address"], [STRANGER]))
    assert decode_error(e.value.data).name == "InitializeOnlyDuringConstruction"


# ------------------------------------------------------------------ ERC-7562 hygiene (opcode level)

BANNED_OPCODES = {
    "GASPRICE", "GASLIMIT", "DIFFICULTY", "PREVRANDAO", "TIMESTAMP", "BASEFEE", "BLOCKHASH", "NUMBER",
    "SELFBALANCE", "BALANCE", "ORIGIN", "COINBASE", "CREATE", "SELFDESTRUCT", "BLOBHASH", "BLOBBASEFEE",
    "INVALID",
}
CALL_OPCODES = {"CALL", "CALLCODE", "DELEGATECALL", "STATICCALL"}


def _struct_logs(url: str, call: dict) -> list[dict]:
    trace = rpc(url, "debug_traceCall", [call, "latest", {"disableStorage": True, "disableMemory": True,
                                                         "enableReturnData": False}], timeout=60)
    assert not trace["failed"], trace.get("returnValue")
    return trace["structLogs"]


def _check_7562(logs: list[dict], allowed_call_targets: set[int], create2_allowed: int = 0,
                storage_free_depths: frozenset = frozenset()) -> set[str]:
    """Checks opcodes of every frame except those of the EntryPoint (entered by a CALL to it)."""
    seen = set()
    exempt_depth = None
    creates = 0
    for i, step in enumerate(logs):
        op, depth = step["op"], step["depth"]
        if exempt_depth is not None:
            if depth > exempt_depth:
                continue
            exempt_depth = None
        seen.add(op)
        assert op not in BANNED_OPCODES, f"banned opcode {op} at step {i} depth {depth}"
        if op == "GAS":
            assert logs[i + 1]["op"] in CALL_OPCODES, f"GAS followed by {logs[i + 1]['op']} at step {i}"
        if op in ("SLOAD", "SSTORE"):
            assert depth not in storage_free_depths, f"{op} at depth {depth}"
        if op == "CREATE2":
            creates += 1
        if op in CALL_OPCODES:
            target = int(step["stack"][-2], 16)
            assert target in allowed_call_targets, f"{op} to {hex(target)}"
            if target == int(V07.address, 16) or target == int(V08.address, 16):
                exempt_depth = depth  # the prefund payment: the EntryPoint's own code is exempt
    assert creates <= create2_allowed
    return seen


def test_validation_is_erc7562_clean(env, policy_account):
    acct, key, signer = policy_account["acct"], policy_account["key"], policy_account["signer"]
    token = token_of(env)
    impl = int(env.sessions.implementations["0.7"], 16)
    batch = encode_execute_batch([
        Call(token, 0, erc20_transfer(RECIPIENT, 10)), Call(token, ETH // 10, SEL_DEPOSIT), Call(RECIPIENT, 1),
    ])
    # session mode, with a prefund payment to the EntryPoint
    op = session_op(acct, key, batch)
    logs = _struct_logs(env.url, validation_trace_call(V07, op, acct.op_hash(op), missing=10**15))
    seen = _check_7562(logs, {1, impl, int(V07.address, 16)})
    assert {"SSTORE", "STATICCALL", "DELEGATECALL", "CALL"} <= seen  # counters written, ecrecover, prefund
    # enable mode (grant + use in one validation)
    key2, signer2 = new_key()
    spec = policy_spec(signer2, token, period=600, usage_limit=3)
    op = acct.sign_enable(acct.build(batch), spec, key2, nonce=0)
    logs = _struct_logs(env.url, validation_trace_call(V07, op, acct.op_hash(op)))
    _check_7562(logs, {1, impl})
    # the factory: one CREATE2, no storage of its own, the new account initialised via DELEGATECALL
    owner = new_key()[1]
    data = encode_create_account(owner, 99)
    logs = _struct_logs(env.url, {"from": STRANGER, "to": env.sessions.factories["0.7"], "data": "0x" + data.hex(),
                                  "gas": hex(3_000_000)})
    _check_7562(logs, {impl}, create2_allowed=1, storage_free_depths=frozenset({1}))
    # negative control: the checker does catch a clock read (init code TIMESTAMP POP STOP)
    logs = _struct_logs(env.url, {"from": STRANGER, "data": "0x425000"})
    with pytest.raises(AssertionError, match="banned opcode TIMESTAMP"):
        _check_7562(logs, {1, impl})


def test_gas_of_session_validation(env, policy_account):
    """Not a limit, a tripwire: validation of a 3-call session batch stays well below 300k gas."""
    acct, key = policy_account["acct"], policy_account["key"]
    token = token_of(env)
    batch = encode_execute_batch([
        Call(token, 0, erc20_transfer(RECIPIENT, 10)), Call(token, ETH // 10, SEL_DEPOSIT), Call(RECIPIENT, 1),
    ])
    op = session_op(acct, key, batch)
    call = validation_trace_call(V07, op, acct.op_hash(op))
    gas = int(rpc(env.url, "eth_estimateGas", [call, "latest"]), 16)
    assert gas < 300_000, gas
