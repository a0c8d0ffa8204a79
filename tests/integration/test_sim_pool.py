"""The async Simulator facade: process pool (and in-process thread), errors, recovery."""
from __future__ import annotations

import asyncio
import os
import signal

import pytest
import pytest_asyncio

from bundler.devchain.anvil import ANVIL_ACCOUNT0
from bundler.entrypoint import V07, V08
from bundler.errors import ExecutionReverted, SignatureInvalid, ValidationRejected
from bundler.rpc.params import decode_state_override
from bundler.sim import GasEstimate, NoopTracer, Simulator, ValidationResult
from helpers.accounts import selector, send_handle_ops, user_operation_events
from helpers.inproc import eventually

from eth_abi import encode


@pytest_asyncio.fixture(scope="module", params=[2, 0], ids=["processes", "thread"])
async def sim(chain, request):
    s = Simulator(chain.url, chain.chain_id, workers=request.param)
    await s.start()
    try:
        yield s
    finally:
        await s.close()


def _alive(pid: int) -> bool:
    """Still running (a zombie waiting to be reaped counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def signed(chain, acct, **kw):
    return acct.sign(acct.op(acct.execute(acct.owner, 1, b""), **kw), chain.chain_id)


async def test_validate_ok_and_errors(chain, sim):
    for ep in (V07, V08):
        good, poor = chain.account(ep), chain.account(ep, funded=0)
        block = chain.pinned()
        res = await sim.validate(signed(chain, good), ep, block)
        assert isinstance(res, ValidationResult)
        with pytest.raises(SignatureInvalid) as exc:
            await sim.validate(good.sign(good.op(b""), chain.chain_id, key="0x" + "33" * 32), ep, block)
        assert exc.value.code == -32507
        with pytest.raises(ValidationRejected) as exc:
            await sim.validate(signed(chain, poor), ep, block)
        assert exc.value.code == -32500 and exc.value.message.startswith("AA21 didn't pay prefund")
        # a state override (decoded from the RPC shape at the edge) makes the poor account pay
        res = await sim.validate(signed(chain, poor), ep, block,
                                 overrides=decode_state_override({poor.address: {"balance": hex(10**18)}}))
        assert isinstance(res, ValidationResult)


async def test_concurrent_validations_share_the_block(chain, sim):
    accounts = [chain.account(V07) for _ in range(3)] + [chain.account(V08) for _ in range(3)]
    block = chain.pinned()
    ops = [(signed(chain, a), a.ep) for a in accounts]
    results = await asyncio.gather(*(sim.validate(op, ep, block) for op, ep in ops * 2))
    assert all(isinstance(r, ValidationResult) for r in results)
    assert {r.block_number for r in results} == {block.number}


async def test_tracer_argument(chain, sim):
    acct = chain.account(V08)
    block = chain.pinned()
    plain = await sim.simulate_validation(signed(chain, acct), V08, block, timestamp=block.timestamp + 1)
    traced = await sim.simulate_validation(signed(chain, acct), V08, block, tracer=NoopTracer,
                                           timestamp=block.timestamp + 1)
    assert traced == plain


async def test_estimate_then_bundle(chain, sim):
    for ep in (V07, V08):
        acct = chain.account(ep, deployed=False)
        op = acct.op(acct.execute(acct.owner, 5, b""), verification_gas_limit=0, call_gas_limit=0)
        block = chain.pinned()
        est = await sim.estimate_gas(op, ep, block)
        assert isinstance(est, GasEstimate) and est.confirmed
        final = acct.sign(op.with_changes(verification_gas_limit=est.verification_gas_limit,
                                          call_gas_limit=est.call_gas_limit), chain.chain_id)
        bundle = await sim.simulate_bundle([final], ep, block, beneficiary=ANVIL_ACCOUNT0, sender=ANVIL_ACCOUNT0,
                                           gas=2_000_000)
        assert bundle.success and bundle.ops[0].success
        receipt = send_handle_ops(chain.url, ep, [final], ANVIL_ACCOUNT0, gas=2_000_000)
        assert receipt["status"] == "0x1" and user_operation_events(receipt)[0]["success"]
        assert int(receipt["gasUsed"], 16) == bundle.gas_used

        withdraw = selector("withdrawTo(address,uint256)") + encode(["address", "uint256"], [acct.address, 10**30])
        bad = acct.op(acct.execute(ep.address, 0, withdraw), verification_gas_limit=0, call_gas_limit=0)
        with pytest.raises(ExecutionReverted) as exc:
            await sim.estimate_gas(bad, ep, chain.pinned())
        assert exc.value.code == -32521 and "Withdraw amount too large" in exc.value.message


async def test_pool_recovers_from_a_dead_worker(chain, sim):
    if sim.workers == 0:
        pytest.skip("no worker processes")
    pid = await sim._run("ping")
    assert pid != os.getpid()
    os.kill(pid, signal.SIGKILL)
    await eventually(lambda: not _alive(pid), timeout=10, interval=0.02, what=f"worker {pid} to die")
    acct = chain.account(V07)
    res = await sim.validate(signed(chain, acct), V07, chain.pinned())
    assert isinstance(res, ValidationResult)
