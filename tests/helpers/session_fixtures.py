"""Module-scoped fixtures of the session test modules that run against their own anvil with the
session contracts and one in-process bundler: import them into a test module
(`from helpers.session_fixtures import chain, bundler, rpc, clean, account  # noqa: F401`);
each module gets its own chain and bundler."""
from __future__ import annotations

import aiohttp
import pytest
import pytest_asyncio
from eth_account import Account

from bundler.devchain import deploy_all, fund, start_anvil
from conftest import EXECUTOR_KEY, RpcClient, bundler_config
from helpers.sessions import SessionAccountHandle, deploy_session_contracts

ETH = 10**18


@pytest.fixture(scope="module")
def chain():
    node = start_anvil()
    try:
        node.deployment = deploy_all(node.url)
        node.sessions = deploy_session_contracts(node.url)
        fund(node.url, Account.from_key(EXECUTOR_KEY).address, 10_000 * ETH)
        yield node
    finally:
        node.stop()


@pytest_asyncio.fixture(scope="module")
async def bundler(chain):
    from bundler.app import Bundler

    b = Bundler(bundler_config(chain))
    await b.start()
    try:
        yield b
    finally:
        await b.stop()


@pytest_asyncio.fixture(scope="module")
async def rpc(bundler):
    async with aiohttp.ClientSession() as session:
        yield RpcClient(bundler.url, session)


@pytest_asyncio.fixture
async def clean(bundler, rpc):
    await rpc.call("debug_bundler_clearState")
    await rpc.call("debug_bundler_setBundlingMode", "manual")
    yield bundler


def account(chain, ep, **kw) -> SessionAccountHandle:
    """A deployed SessionAccount with validation/call gas that every session test op fits in."""
    acct = SessionAccountHandle.create(chain.url, chain.chain_id, ep, chain.sessions, **kw)
    acct.verification_gas, acct.call_gas = 400_000, 200_000
    return acct
