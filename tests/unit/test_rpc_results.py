"""The wire form of results is written at the RPC edge (rpc/results.py) from typed values."""
from bundler.gas.estimate import GasLimits
from bundler.rpc.results import encode_gas_limits


def test_gas_limits_are_hex_quantities_with_paymaster_limits_only_when_sponsored():
    plain = GasLimits(pre_verification_gas=50_000, verification_gas_limit=0x1234, call_gas_limit=0)
    assert encode_gas_limits(plain) == {
        "preVerificationGas": "0xc350", "verificationGasLimit": "0x1234", "callGasLimit": "0x0"}
    sponsored = GasLimits(1, 2, 3, paymaster_verification_gas_limit=4, paymaster_post_op_gas_limit=0)
    assert encode_gas_limits(sponsored) == {
        "preVerificationGas": "0x1", "verificationGasLimit": "0x2", "callGasLimit": "0x3",
        "paymasterVerificationGasLimit": "0x4", "paymasterPostOpGasLimit": "0x0"}


def test_a_found_op_is_written_with_a_checksummed_entry_point_and_null_tx_fields_while_pending():
    from bundler.chain.lookup import FoundOp
    from bundler.rpc.results import encode_found_op
    from bundler.userop.codec import format_user_operation
    from bundler.userop.model import UserOperation

    op = UserOperation(sender="0x" + "11" * 20, nonce=1, call_data=b"\x01", call_gas_limit=2,
                       verification_gas_limit=3, pre_verification_gas=4, max_fee_per_gas=5,
                       max_priority_fee_per_gas=6, signature=b"")
    ep = "0x0000000071727de22e5e9d8baf0edac6f37da032"
    assert encode_found_op(None) is None
    assert encode_found_op(FoundOp(op, ep)) == {
        "userOperation": format_user_operation(op), "entryPoint": "0x0000000071727De22E5E9d8BAf0edAc6f37da032",
        "transactionHash": None, "blockHash": None, "blockNumber": None}
    mined = encode_found_op(FoundOp(op, ep, "0x" + "aa" * 32, "0x" + "bb" * 32, "0x10"))
    assert (mined["transactionHash"], mined["blockHash"], mined["blockNumber"]) == ("0x" + "aa" * 32, "0x" + "bb" * 32, "0x10")


def test_a_receipt_is_read_off_the_bundle_receipt_and_written_in_the_erc7769_form():
    from eth_abi import encode
    from eth_utils import to_checksum_address

    from bundler.chain.userop_logs import REVERT_REASON_TOPIC, USER_OPERATION_EVENT_TOPIC, build_receipt
    from bundler.rpc.results import encode_receipt

    ep, sender, paymaster = "0x0000000071727de22e5e9d8baf0edac6f37da032", "0x" + "ab" * 20, "0x" + "cd" * 20
    op_hash, other = "0x" + "11" * 32, "0x" + "22" * 32

    def word(address: str) -> str:
        return "0x" + "00" * 12 + address[2:]

    account_log = {"address": sender, "topics": ["0x" + "99" * 32], "data": "0x"}
    revert = {"address": ep, "topics": [REVERT_REASON_TOPIC, op_hash, word(sender)],
              "data": "0x" + encode(["uint256", "bytes"], [5, b"\x08\xc3\x79\xa0"]).hex()}
    event = {"address": ep.upper().replace("0X", "0x"), "topics": [USER_OPERATION_EVENT_TOPIC, op_hash, word(sender), word(paymaster)],
             "data": "0x" + encode(["uint256", "bool", "uint256", "uint256"], [5, False, 10**15, 21_000]).hex()}
    tx_receipt = {"transactionHash": "0x" + "aa" * 32, "status": "0x1", "logs": [account_log, revert, event]}
    assert build_receipt(other, tx_receipt) is None and encode_receipt(None) is None
    assert encode_receipt(build_receipt(op_hash, tx_receipt)) == {
        "userOpHash": op_hash, "entryPoint": "0x0000000071727De22E5E9d8BAf0edAc6f37da032",
        "sender": to_checksum_address(sender), "nonce": "0x5", "paymaster": to_checksum_address(paymaster),
        "actualGasCost": hex(10**15), "actualGasUsed": hex(21_000), "success": False,
        "reason": "0x08c379a0", "logs": [account_log], "receipt": tx_receipt,
    }


def test_reputation_rows_and_stake_status_are_written_in_the_bundler_specs_schema():
    from eth_utils import to_checksum_address

    from bundler.pool.reputation import Entry, Status
    from bundler.pool.staking import DepositInfo
    from bundler.rpc.results import encode_reputation, encode_stake_status

    a, b = "0x" + "ab" * 20, "0x" + "cd" * 20
    assert encode_reputation([(a, Entry(3, 2), Status.OK), (b, Entry(1000, 0), Status.BANNED)]) == [
        {"address": to_checksum_address(a), "opsSeen": "0x3", "opsIncluded": "0x2", "status": "0x0"},
        {"address": to_checksum_address(b), "opsSeen": "0x3e8", "opsIncluded": "0x0", "status": "0x2"}]
    info = DepositInfo(deposit=5, staked=True, stake=10**18, unstake_delay_sec=86_400, withdraw_time=0)
    assert encode_stake_status(a, info, True) == {
        "stakeInfo": {"addr": to_checksum_address(a), "stake": "1000000000000000000", "unstakeDelaySec": "86400"},
        "isStaked": True}


def _session():
    from session_sdk.types import GasPolicy, Limit, Scope, SessionSpec, Status, TransferPolicy
    from bundler.sessions.policy import SessionState, StoredCounter

    spec = SessionSpec(signer="0x" + "5e" * 20, valid_after=1_000, valid_until=20_000, period=3_600, usage_limit=5,
                       transfer_policies=(TransferPolicy("0x" + "77" * 20, 10**17, Limit.allowance(10**18)),),
                       gas=GasPolicy(max_cost_per_op=10**16, cost_limit=Limit.lifetime(10**17)))
    state = SessionState(status=Status.ACTIVE, grant_nonce=1, usage_count=2, spec=spec, counters={
        (Scope.TRANSFER_VALUE, 0, 0): StoredCounter(period_index=1, used=3 * 10**17),
        (Scope.GAS, 0, 0): StoredCounter(used=4 * 10**16)})
    pending = {(Scope.TRANSFER_VALUE, 0, 0): {1: 10**17}, (Scope.GAS, 0, 0): {0: 10**16, 1: 10**16}}
    return spec, state, pending


def test_limit_uses_are_values_and_the_session_report_is_written_at_the_edge():
    from eth_utils import to_checksum_address

    from bundler.rpc.results import encode_session_report, encode_session_spec
    from session_sdk.types import LimitKind, Scope
    from bundler.sessions.views import LimitUse, SessionReport, limit_uses, status_of

    spec, state, pending = _session()
    now = 1_000 + 3_600 + 10  # period 1
    uses = limit_uses(state, now, pending)
    assert uses[0] == LimitUse(key=(Scope.TRANSFER_VALUE, 0, 0), description=uses[0].description,
                               kind=LimitKind.ALLOWANCE, limit=10**18, used=3 * 10**17, pending=10**17,
                               remaining=6 * 10**17, period=(1, 4_600, 8_199))
    assert (uses[1].used, uses[1].pending, uses[1].remaining, uses[1].period) == (4 * 10**16, 2 * 10**16, 4 * 10**16, None)
    account = "0x" + "ac" * 20
    report = SessionReport(account=account, session_key=spec.signer, entry_point="0x4337084d9e255ff0702461cf8895ce9e3b5ff108",
                           account_type="clone", block_number=0x20, now=now, status=status_of(state, now), grant_nonce=1,
                           spec=spec, uses_used=2, uses_pending=1, uses_remaining=2, current_period=1, limits=uses,
                           pending_ops=["0x" + "01" * 32])
    out = encode_session_report(report)
    assert list(out) == ["account", "sessionKey", "entryPoint", "accountType", "blockNumber", "now", "status",
                         "grantNonce", "spec", "uses", "currentPeriod", "limits", "gas", "pendingOps"]
    assert (out["account"], out["entryPoint"], out["blockNumber"], out["status"]) == (
        to_checksum_address(account), "0x4337084D9E255Ff0702461CF8895CE9E3b5Ff108", "0x20", "active")
    assert out["uses"] == {"limit": 5, "used": 2, "pending": 1, "remaining": 2}
    assert out["limits"][0] == {
        "scope": "transferValue", "policyType": "transfer", "policyIndex": 0, "description": uses[0].description,
        "kind": "allowance", "limit": hex(10**18), "used": hex(3 * 10**17), "pending": hex(10**17),
        "remaining": hex(6 * 10**17), "periodIndex": 1, "periodStart": 4_600, "periodEnd": 8_199}
    assert out["gas"] == {"maxCostPerOp": hex(10**16), "paymasters": [], "budget": out["limits"][1]}
    assert out["limits"][1]["scope"] == "gasCost" and "periodIndex" not in out["limits"][1]
    assert out["spec"] == encode_session_spec(spec)
    assert out["spec"]["transferPolicies"] == [{"target": "0x" + "77" * 20, "maxValuePerUse": hex(10**17),
                                                "valueLimit": {"kind": "allowance", "amount": hex(10**18)}}]


def test_an_unknown_session_has_no_gas_budget_and_activity_items_join_the_op_record():
    from bundler.rpc.results import encode_activity_item, encode_session_report
    from session_sdk.types import Scope
    from bundler.sessions.views import ActivityItem, SessionReport
    from bundler.store.records import OpRecord, OpStatus, SessionActivity
    from bundler.userop.model import UserOperation

    unknown = encode_session_report(SessionReport(
        account="0x" + "ac" * 20, session_key="0x" + "5e" * 20, entry_point=None, account_type="counterfactual",
        block_number=1, now=5, status="unknown", grant_nonce=0, spec=None, uses_used=0, uses_pending=0,
        uses_remaining=None, current_period=None, limits=[], pending_ops=[]))
    assert unknown["entryPoint"] is None and unknown["spec"] is None and "gas" not in unknown
    assert unknown["uses"] == {"limit": None, "used": 0, "pending": 0, "remaining": None}

    ep = "0x0000000071727de22e5e9d8baf0edac6f37da032"
    a = SessionActivity(op_hash="0x" + "01" * 32, account="0x" + "ac" * 20, session_key="0x" + "5e" * 20,
                        entry_point=ep, nonce=7, mode="session", period_index=0, received_at=12.5,
                        calls=[{"target": "0x" + "77" * 20, "value": 10**18, "data": "0xa9059cbb" + "00" * 64},
                               {"target": "0x" + "78" * 20, "value": 0, "data": "0x"}],
                        consumed=[{"scope": Scope.CALL_ARG, "policyIndex": 0, "constraintIndex": 1, "amount": 5},
                                  {"scope": Scope.CALL_VALUE, "policyIndex": 0, "constraintIndex": 0, "amount": 6}])
    op = UserOperation(sender=a.account, nonce=7, call_data=b"", call_gas_limit=0, verification_gas_limit=0,
                       pre_verification_gas=0, max_fee_per_gas=0, max_priority_fee_per_gas=0, signature=b"")
    dropped = OpRecord(hash=a.op_hash, entry_point=ep, op=op, status=OpStatus.DROPPED, reason="session revoked",
                       error_code=-32507)
    entry = encode_activity_item(ActivityItem(a, dropped))
    assert (entry["entryPoint"], entry["nonce"], entry["receivedAt"], entry["status"]) == (
        "0x0000000071727De22E5E9d8BAf0edAc6f37da032", "0x7", 12, "dropped")
    assert entry["calls"][0] == {"target": "0x" + "77" * 20, "value": hex(10**18), "data": a.calls[0]["data"],
                                 "function": entry["calls"][0]["function"]} and "function" not in entry["calls"][1]
    assert entry["consumed"] == [{"scope": "callArgument", "policyIndex": 0, "constraintIndex": 1, "amount": "0x5"},
                                 {"scope": "callValue", "policyIndex": 0, "amount": "0x6"}]
    assert (entry["transactionHash"], entry["blockNumber"], entry["reason"], entry["errorCode"]) == (
        None, None, "session revoked", -32507)
    assert encode_activity_item(ActivityItem(a, None))["status"] == "unknown"


def test_gas_price_tiers_are_hex_quantities():
    from bundler.chain.fees import GasPrice
    from bundler.rpc.results import encode_gas_prices

    assert encode_gas_prices({"slow": GasPrice(100, 1), "fast": GasPrice(300, 20)}) == {
        "slow": {"maxFeePerGas": "0x64", "maxPriorityFeePerGas": "0x1"},
        "fast": {"maxFeePerGas": "0x12c", "maxPriorityFeePerGas": "0x14"}}
