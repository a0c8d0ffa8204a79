"""Paymaster paths (v0.7 sample VerifyingPaymaster): AA31/AA33/AA32/AA34 mapping, gas."""
from __future__ import annotations

import time

import pytest

from bundler.entrypoint import V07
from bundler.errors import PaymasterDepositTooLow, PaymasterRejected, SignatureInvalid, TimeRangeInvalid
from bundler.sim import (
    GasEstimate, SimulationFailure, ValidationResult, failure_error,
    validation_error,
)
from helpers.accounts import DUMMY_SIGNATURE, mine, send_handle_ops, user_operation_events
from helpers.paymaster import VerifyingPaymasterHelper

BENEFICIARY = "0x" + "be" * 20


@pytest.fixture(scope="module")
def paymaster(chain):
    pm = VerifyingPaymasterHelper.deploy(chain.url, V07)
    pm.deposit(10**18)
    mine(chain.url)
    return pm


def sponsored(chain, acct, pm, **kw):
    op = pm.attach(acct.op(acct.execute(acct.owner, 0, b"")), **kw)
    return acct.sign(op, chain.chain_id)


def test_sponsored_op_validates(chain, worker, paymaster):
    acct = chain.account(V07, funded=0)
    op = sponsored(chain, acct, paymaster)
    res = worker.simulate_validation(op, V07, chain.pinned())
    assert isinstance(res, ValidationResult), res
    assert not res.paymaster.sig_failed and res.paymaster_context == b""
    assert validation_error(res, now=int(time.time()), paymaster=op.paymaster) is None


def test_bad_paymaster_signature_is_signature_invalid(chain, worker, paymaster):
    acct = chain.account(V07, funded=0)
    op = sponsored(chain, acct, paymaster, key="0x" + "44" * 32)
    res = worker.simulate_validation(op, V07, chain.pinned())
    assert isinstance(res, ValidationResult) and res.paymaster.sig_failed
    err = validation_error(res, now=int(time.time()), paymaster=op.paymaster)
    assert isinstance(err, SignatureInvalid) and err.data["paymaster"].lower() == paymaster.address


def test_paymaster_revert_is_aa33_with_reason(chain, worker, paymaster):
    acct = chain.account(V07, funded=0)
    op = sponsored(chain, acct, paymaster, signature=b"\x01" * 10)
    res = worker.simulate_validation(op, V07, chain.pinned())
    assert isinstance(res, SimulationFailure) and res.code == "AA33"
    assert res.message == "AA33 reverted: VerifyingPaymaster: invalid signature length in paymasterAndData"
    err = failure_error(res, op.paymaster)
    assert isinstance(err, PaymasterRejected) and err.code == -32501


def test_paymaster_without_deposit_is_aa31(chain, worker):
    pm = VerifyingPaymasterHelper.deploy(chain.url, V07)
    acct = chain.account(V07, funded=0)
    op = sponsored(chain, acct, pm)
    res = worker.simulate_validation(op, V07, chain.pinned())
    assert isinstance(res, SimulationFailure) and res.code == "AA31"
    err = failure_error(res, op.paymaster)
    assert isinstance(err, PaymasterDepositTooLow) and err.code == -32508


def test_paymaster_time_range(chain, worker, paymaster):
    acct = chain.account(V07, funded=0)
    now = int(time.time())
    op = sponsored(chain, acct, paymaster, valid_until=now - 10)
    res = worker.simulate_validation(op, V07, chain.pinned())
    assert isinstance(res, ValidationResult)  # simulateValidation leaves the window to us
    err = validation_error(res, now=now, paymaster=op.paymaster)
    assert isinstance(err, TimeRangeInvalid) and "paymaster" in err.message
    # the real handleOps refuses it with AA32
    block = chain.pinned()
    sim = worker.simulate_handle_ops([op], V07, block, BENEFICIARY, "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266",
                                     gas=2_000_000)
    assert sim.failed_op_index == 0 and sim.failure.code == "AA32"


def test_gas_measurement_with_paymaster_works_on_chain(chain, worker, paymaster):
    acct = chain.account(V07, deployed=False, funded=0)
    draft = paymaster.attach(acct.op(acct.execute(acct.owner, 0, b""), verification_gas_limit=0, call_gas_limit=0),
                             verification_gas=0, signature=DUMMY_SIGNATURE)
    est = worker.measure_gas(draft, V07, chain.pinned())
    assert isinstance(est, GasEstimate) and est.confirmed, est
    assert 0 < est.paymaster_validation_gas < est.paymaster_verification_gas_limit < 100_000
    final = acct.op(acct.execute(acct.owner, 0, b""), verification_gas_limit=est.verification_gas_limit,
                    call_gas_limit=est.call_gas_limit)
    final = acct.sign(paymaster.attach(final, verification_gas=est.paymaster_verification_gas_limit), chain.chain_id)
    receipt = send_handle_ops(chain.url, V07, [final], BENEFICIARY)
    assert receipt["status"] == "0x1"
    (event,) = user_operation_events(receipt)
    assert event["success"]
