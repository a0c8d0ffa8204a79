"""A bundler of its own for a test (settings differing from the shared one), and fresh funded
SimpleAccounts with signed ops for it."""
from __future__ import annotations

import contextlib
import os

import aiohttp
from eth_account import Account

from bundler.devchain.anvil import rpc as node_rpc
from bundler.userop import format_user_operation

from .accounts import SimpleAccountHelper, mine


@contextlib.asynccontextmanager
async def running_bundler(anvil, **overrides):
    """(bundler, RpcClient) for a bundler with `overrides` on the session anvil. Unless keys are
    given, it gets an executor key of its own (funded), so its nonces never race the shared
    bundler's."""
    from bundler.app import Bundler
    from conftest import RpcClient, bundler_config

    if "private_key" not in overrides:
        key = "0x" + os.urandom(32).hex()
        node_rpc(anvil.url, "anvil_setBalance", [Account.from_key(key).address, hex(1000 * 10**18)])
        overrides["private_key"] = [key]
    b = Bundler(bundler_config(anvil, **overrides))
    await b.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield b, RpcClient(b.url, session)
    finally:
        await b.stop()


def funded_account(anvil, ep, deployed: bool = True, funded: int = 10**18) -> SimpleAccountHelper:
    factory = anvil.deployment.factories[ep.version]
    make = SimpleAccountHelper.create if deployed else SimpleAccountHelper.counterfactual
    acct = make(anvil.url, ep, factory)
    if funded:
        node_rpc(anvil.url, "anvil_setBalance", [acct.address, hex(funded)])
    mine(anvil.url)
    return acct


def signed_op(anvil, acct, **changes) -> dict:
    """A valid op (RPC form) of `acct` sending 1 wei to a random address."""
    target = "0x" + os.urandom(20).hex()
    op = acct.sign(acct.op(acct.execute(target, 1), **changes), anvil.chain_id)
    return format_user_operation(op)
