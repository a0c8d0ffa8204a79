"""Module-scoped fixtures of the session test modules that run against their own anvil with the
session contracts and one in-process bundler: import them into a test module
(`from helpers.session_fixtures import chain, bundler, rpc, clean, account  # noqa: F401`);
each module gets its own chain and bundler."""
from __future__ import annotations

import pytest
import pytest_asyncio
from eth_account import Account

from bundler.devchain import deploy_all, fund, start_anvil
from conftest import EXECUTOR_KEY
from helpers.inproc import running_bundler
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
async def _running(chain):
    async with running_bundler(chain, private_key=[EXECUTOR_KEY]) as pair:  # the funded executor
        yield pair


@pytest_asyncio.fixture(scope="module")
async def bundler(_running):
    return _running[0]


@pytest_asyncio.fixture(scope="module")
async def rpc(_running):
    return _running[1]


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
