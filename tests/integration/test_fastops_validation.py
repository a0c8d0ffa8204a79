"""sim/fastops.py against py-evm's own opcodes on real validations: SimpleAccounts and every
RulesEntity command (contracts/test/rules) for each entity role, all EntryPoint versions, with
the ERC-7562 tracer as in safe mode. The whole outcome must be equal: the ValidationResult or
failure, the trace the rules are checked on, and the read set kept for the second validation."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from bundler.entrypoint import V07, V08, V09
from bundler.sim import SimConfig, SimWorker, executor
from bundler.sim.erc7562.trace import TracerFactory
from helpers.accounts import mine
from helpers.erc7562_common import World

RULES_SOURCE = Path(__file__).resolve().parents[2] / "contracts" / "test" / "rules" / "RulesEntity.sol"
COMMANDS = sorted(set(re.findall(r'"([A-Z][A-Z0-9_]{2,})"', RULES_SOURCE.read_text()))) + [""]
ROLES = ["account", "paymaster", "factory", "account-call", "paymaster-delegatecall", "factory-call"]


def both(worker: SimWorker, op, ep, block, monkeypatch):
    out = []
    for stock in (True, False):
        monkeypatch.setattr(executor, "STOCK_OPCODES", stock)
        out.append(worker.simulate_validation(op, ep, block, tracer=TracerFactory.for_op(op, ep.address)))
    return out


@pytest.mark.parametrize("ep", [V07, V08, V09], ids=lambda ep: f"v{ep.version}")
def test_rules_entities_validate_the_same(chain, monkeypatch, ep):
    assert len(COMMANDS) > 30
    world = World(chain.url, chain.chain_id, ep)
    ops = [world.op_for(role, command) for role in ROLES for command in COMMANDS]
    mine(chain.url)
    block = chain.pinned()
    worker = SimWorker(chain.url, SimConfig(chain_id=chain.chain_id))
    try:
        kinds = set()
        for op in ops:
            stock, fast = both(worker, op, ep, block, monkeypatch)
            assert fast == stock
            kinds.add(type(stock).__name__)
        assert kinds == {"ValidationResult", "SimulationFailure"}  # both outcomes were compared
    finally:
        worker.close()


@pytest.mark.parametrize("ep", [V07, V08], ids=lambda ep: f"v{ep.version}")
def test_simple_accounts_validate_the_same(chain, monkeypatch, ep):
    accounts = [chain.account(ep) for _ in range(3)]
    ops = [a.sign(a.op(a.execute(a.owner, 1, b"")), chain.chain_id) for a in accounts]
    mine(chain.url)
    block = chain.pinned()
    worker = SimWorker(chain.url, SimConfig(chain_id=chain.chain_id))
    try:
        for op in ops:
            stock, fast = both(worker, op, ep, block, monkeypatch)
            assert fast == stock and type(fast).__name__ == "ValidationResult"
            assert fast.trace is not None
    finally:
        worker.close()
