"""Gas measurement and handleOps simulation, checked against real transactions on anvil."""
from __future__ import annotations

import pytest
from eth_abi import encode

from bundler.devchain.anvil import ANVIL_ACCOUNT0, rpc
from bundler.entrypoint import V07, V08
from bundler.sim import GasEstimate, GasPolicy, SimulationFailure
from helpers.accounts import (
    handle_ops_data, selector, send_handle_ops, user_operation_events,
)

EPS = pytest.mark.parametrize("ep", [V07, V08], ids=["v07", "v08"])
BENEFICIARY = "0x" + "be" * 20


def deposit_call(acct, ep, value=10**15) -> bytes:
    """execute(EntryPoint, value, depositTo(acct)): value transfer + SSTOREs in the execution."""
    return acct.execute(ep.address, value, selector("depositTo(address)") + encode(["address"], [acct.address]))


def unsigned_zero_limits(acct, call_data):
    return acct.op(call_data, verification_gas_limit=0, call_gas_limit=0, pre_verification_gas=60_000)


def apply(op, est: GasEstimate):
    return op.with_changes(
        verification_gas_limit=est.verification_gas_limit,
        call_gas_limit=est.call_gas_limit,
        paymaster_verification_gas_limit=est.paymaster_verification_gas_limit,
        paymaster_post_op_gas_limit=est.paymaster_post_op_gas_limit,
    )


@EPS
@pytest.mark.parametrize("deployed", [False, True], ids=["with-factory", "deployed"])
def test_measured_limits_work_on_chain(chain, worker, ep, deployed):
    acct = chain.account(ep, deployed=deployed)
    op = unsigned_zero_limits(acct, deposit_call(acct, ep))
    est = worker.measure_gas(op, ep, chain.pinned())
    assert isinstance(est, GasEstimate), est
    assert est.confirmed and est.execution_success
    assert est.execution_gas_used > 20_000  # depositTo: cold SSTORE of the deposit
    assert est.execution_gas_used <= est.execution_gas_needed <= est.call_gas_limit
    assert est.call_gas_limit < 100_000
    if deployed:
        assert est.factory_gas == 0 and est.verification_gas_limit < 150_000
    else:
        assert est.factory_gas > 100_000 and est.verification_gas_limit < 400_000
    assert est.validation_gas == est.pre_op_gas - op.pre_verification_gas
    final = acct.sign(apply(op, est), chain.chain_id)
    receipt = send_handle_ops(chain.url, ep, [final], BENEFICIARY)
    assert receipt["status"] == "0x1"
    (event,) = user_operation_events(receipt)
    assert event["success"] and event["sender"] == acct.address


@EPS
def test_limits_without_buffer_are_tight(chain, worker, ep):
    """With no buffer the proposed limits are just what the op needs: they work on chain, and
    10% less execution gas makes the execution fail there (on a twin account in the same state)."""
    acct, twin = chain.account(ep), chain.account(ep)
    op = unsigned_zero_limits(acct, deposit_call(acct, ep))
    est = worker.measure_gas(op, ep, chain.pinned(), policy=GasPolicy(buffer_percent=0))
    assert est.confirmed
    ok = acct.sign(apply(op, est), chain.chain_id)
    (event,) = user_operation_events(send_handle_ops(chain.url, ep, [ok], BENEFICIARY))
    assert event["success"]
    short = apply(unsigned_zero_limits(twin, deposit_call(twin, ep)), est)
    short = short.with_changes(call_gas_limit=est.call_gas_limit * 9 // 10)
    (event,) = user_operation_events(send_handle_ops(chain.url, ep, [twin.sign(short, chain.chain_id)], BENEFICIARY))
    assert not event["success"]


@EPS
def test_execution_revert_is_reported(chain, worker, ep):
    acct = chain.account(ep)
    withdraw = selector("withdrawTo(address,uint256)") + encode(["address", "uint256"], [acct.address, 10**30])
    op = unsigned_zero_limits(acct, acct.execute(ep.address, 0, withdraw))
    est = worker.measure_gas(op, ep, chain.pinned())
    assert isinstance(est, GasEstimate)
    assert not est.execution_success
    assert est.execution_revert_reason == "Withdraw amount too large"


@EPS
def test_unfunded_counterfactual_account_can_be_estimated(chain, worker, ep):
    acct = chain.account(ep, deployed=False, funded=0)
    est = worker.measure_gas(unsigned_zero_limits(acct, acct.execute(acct.owner, 0, b"")), ep, chain.pinned())
    assert isinstance(est, GasEstimate) and est.confirmed
    no_fund = worker.measure_gas(unsigned_zero_limits(acct, b""), ep, chain.pinned(), fund=False)
    assert isinstance(no_fund, SimulationFailure) and no_fund.code == "AA21"


def real_call_revert(url: str, ep, data: bytes, block: str) -> bytes:
    """Revert data of an eth_call on anvil (our rpc() raises with the error object)."""
    try:
        rpc(url, "eth_call", [{"from": ANVIL_ACCOUNT0, "to": ep.address, "data": "0x" + data.hex(),
                               "gas": hex(5_000_000)}, block])
    except RuntimeError as exc:
        text = str(exc)
        start = text.index("'data': '0x") + len("'data': '")
        return bytes.fromhex(text[start + 2:text.index("'", start)])
    raise AssertionError("eth_call did not revert")


@EPS
def test_handle_ops_simulation_agrees_with_chain(chain, worker, ep):
    a, b = chain.account(ep), chain.account(ep)
    ops = [a.sign(a.op(deposit_call(a, ep)), chain.chain_id), b.sign(b.op(b.execute(b.owner, 1, b"")), chain.chain_id)]
    block = chain.pinned()
    sim = worker.simulate_handle_ops(ops, ep, block, BENEFICIARY, ANVIL_ACCOUNT0, gas=3_000_000,
                                     gas_price=block.next_base_fee() + 10**9)
    assert sim.success, sim.failure
    assert [o.sender for o in sim.ops] == [a.address, b.address] and all(o.success for o in sim.ops)
    receipt = send_handle_ops(chain.url, ep, ops, BENEFICIARY, gas=3_000_000)
    assert receipt["status"] == "0x1"
    assert sim.gas_used == int(receipt["gasUsed"], 16)
    real = user_operation_events(receipt)
    assert [e["actualGasUsed"] for e in real] == [o.actual_gas_used for o in sim.ops]


@EPS
def test_handle_ops_failing_op_index_agrees_with_chain(chain, worker, ep):
    a, b, c = chain.account(ep), chain.account(ep), chain.account(ep)
    good_a = a.sign(a.op(a.execute(a.owner, 1, b"")), chain.chain_id)
    bad_b = b.sign(b.op(b.execute(b.owner, 1, b"")), chain.chain_id, key="0x" + "22" * 32)
    good_c = c.sign(c.op(c.execute(c.owner, 1, b"")), chain.chain_id)
    ops = [good_a, bad_b, good_c]
    block = chain.pinned()
    sim = worker.simulate_handle_ops(ops, ep, block, BENEFICIARY, ANVIL_ACCOUNT0, gas=3_000_000)
    assert not sim.success
    assert sim.failed_op_index == 1 and sim.failure.code == "AA24"
    assert sim.failure.message == "AA24 signature error"
    # the node agrees on the revert data...
    revert = real_call_revert(chain.url, ep, handle_ops_data(ops, BENEFICIARY), hex(block.number))
    assert revert == sim.failure.revert_data
    # ... and a real transaction reverts
    assert send_handle_ops(chain.url, ep, ops, BENEFICIARY, gas=3_000_000)["status"] == "0x0"
    # drop the op and retry: both succeed
    retry = [good_a, good_c]
    block = chain.pinned()
    sim2 = worker.simulate_handle_ops(retry, ep, block, BENEFICIARY, ANVIL_ACCOUNT0, gas=3_000_000)
    assert sim2.success
    receipt = send_handle_ops(chain.url, ep, retry, BENEFICIARY, gas=3_000_000)
    assert receipt["status"] == "0x1" and int(receipt["gasUsed"], 16) == sim2.gas_used


@EPS
def test_handle_ops_from_unfunded_executor_fails(chain, worker, ep):
    a = chain.account(ep)
    op = a.sign(a.op(a.execute(a.owner, 1, b"")), chain.chain_id)
    sim = worker.simulate_handle_ops([op], ep, chain.pinned(), BENEFICIARY, "0x" + "77" * 20,
                                     gas=1_000_000, gas_price=10**9)
    assert not sim.success and "InsufficientFunds" in sim.failure.reason
