"""Shared pieces of the ERC-7562 RPC tests: per-EntryPoint worlds of RulesEntity contracts, ops
for each entity role, and assertions on eth_sendUserOperation answers."""
from __future__ import annotations

import pytest

from bundler.entrypoint import V07, V08, V09
from bundler.userop import format_user_operation
from helpers.rules import RulesWorld

EPS = [pytest.param(V07, id="v0.7"), pytest.param(V08, id="v0.8"), pytest.param(V09, id="v0.9")]
OPCODE_VIOLATION = -32502
STAKE_TOO_LOW = -32505

# (entity whose phase runs the command, how the command is reached)
ROLES = {
    "account": ("account", "direct"),
    "paymaster": ("paymaster", "direct"),
    "factory": ("factory", "direct"),
    "account-call": ("account", "call"),
    "account-delegatecall": ("account", "delegatecall"),
    "paymaster-call": ("paymaster", "call"),
    "paymaster-delegatecall": ("paymaster", "delegatecall"),
    "factory-call": ("factory", "call"),
    "factory-delegatecall": ("factory", "delegatecall"),
}


class World(RulesWorld):
    """A RulesWorld with a shared account, paymaster and (unstaked) factory."""

    def __init__(self, url, chain_id, ep):
        super().__init__(url, chain_id, ep)
        self.account = self.entity()
        self.paymaster = self.entity(paymaster=True)
        self.unstaked_factory = self.factory()

    def op_for(self, role: str, command: str, *, target: str | None = None, account: str | None = None,
               paymaster: str | None = None, factory: str | None = None):
        entity, how = ROLES[role]
        payload = self.payload(command, how, target)
        if entity == "account":
            return self.op(account or self.account, payload)
        if entity == "paymaster":
            return self.op(account or self.account, paymaster=paymaster or self.paymaster, pm_payload=payload)
        return self.deploy_op(factory or self.unstaked_factory, factory_payload=payload)


def make_worlds(anvil) -> dict[str, World]:
    return {ep.version: World(anvil.url, anvil.chain_id, ep) for ep in (V07, V08, V09)}


async def send(rpc, op, ep) -> dict:
    return await rpc.request("eth_sendUserOperation", format_user_operation(op), ep.address)


def assert_ok(answer: dict) -> None:
    assert "error" not in answer, answer["error"]
    assert answer["result"].startswith("0x") and len(answer["result"]) == 66


def assert_error(answer: dict, code: int, *fragments: str) -> dict:
    assert "error" in answer, f"expected error {code}, got {answer.get('result')}"
    error = answer["error"]
    assert error["code"] == code, error
    for fragment in fragments:
        assert fragment in error["message"], error
    return error
