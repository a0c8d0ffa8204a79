"""Shared fixtures: one anvil with the EntryPoints per test session, and a bundler served over
HTTP on a free port inside the test event loop.

The tests live in three rooms, each marked after its folder (markers registered in
pyproject.toml): tests/unit (no node: pure logic, fakes, SQLite in a temp dir), tests/integration
(an anvil node and an in-process bundler), tests/e2e (real clients and subprocesses: bundler
processes, `bundler dev`, node scripts). `pytest -m unit` runs the first room alone."""
from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from eth_account import Account

from bundler import config as cfg
from bundler.devchain import deploy_all, free_port, fund, start_anvil

EXECUTOR_KEY = "0x" + "5e" * 32
TESTS = Path(__file__).resolve().parent
ROOMS = ("unit", "integration", "e2e")


def room_of(path: Path) -> str | None:
    """The room (first folder under tests/) a test file lives in, None outside the three."""
    try:
        first = Path(path).resolve().relative_to(TESTS).parts[0]
    except (ValueError, IndexError):
        return None
    return first if first in ROOMS else None


def pytest_collection_modifyitems(config, items):
    for item in items:
        room = room_of(item.path)
        if room is None:
            raise pytest.UsageError(f"{item.nodeid}: a test file belongs in tests/unit, tests/integration "
                                    "or tests/e2e (see tests/conftest.py)")
        item.add_marker(getattr(pytest.mark, room))


@pytest.fixture(scope="session")
def anvil():
    node = start_anvil()
    try:
        node.deployment = deploy_all(node.url)
        fund(node.url, Account.from_key(EXECUTOR_KEY).address, 10_000 * 10**18)
        yield node
    finally:
        node.stop()


def bundler_config(anvil, **overrides) -> cfg.Config:
    values = dict(
        rpc_url=anvil.url, port=free_port(), private_key=[EXECUTOR_KEY], debug_api=True,
        sim_workers=1, bundle_mode="manual",
        rate_limit_exempt_loopback=True,  # the tests are local tools (off by default in `bundler run`)
    )
    values.update(overrides)
    return cfg.Config(**values)


class RpcClient:
    """A minimal JSON-RPC caller that returns whole response objects, errors included."""

    def __init__(self, url: str, session: aiohttp.ClientSession):
        self.url = url
        self.session = session
        self._id = 0

    async def raw(self, body: str | bytes, content_type: str = "application/json") -> tuple[int, object]:
        async with self.session.post(self.url, data=body, headers={"Content-Type": content_type}) as resp:
            text = await resp.text()
            return resp.status, (json.loads(text) if text else None)

    async def request(self, method: str, *params) -> dict:
        self._id += 1
        _status, answer = await self.raw(json.dumps({"jsonrpc": "2.0", "id": self._id, "method": method,
                                                     "params": list(params)}))
        return answer

    async def call(self, method: str, *params):
        answer = await self.request(method, *params)
        if "error" in answer:
            raise RpcError(answer["error"])
        return answer["result"]


class RpcError(Exception):
    def __init__(self, error: dict):
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.code = error.get("code")
        self.message = error.get("message")
        self.data = error.get("data")


@pytest_asyncio.fixture(scope="session")
async def bundler(anvil):
    from bundler.app import Bundler

    b = Bundler(bundler_config(anvil))
    await b.start()
    try:
        yield b
    finally:
        await b.stop()


@pytest_asyncio.fixture(scope="session")
async def rpc(bundler):
    async with aiohttp.ClientSession() as session:
        yield RpcClient(bundler.url, session)


@pytest_asyncio.fixture
async def clean_bundler(bundler, rpc):
    """The shared bundler with an empty mempool and manual bundling."""
    await rpc.call("debug_bundler_clearState")
    await rpc.call("debug_bundler_setBundlingMode", "manual")
    yield bundler


@pytest.fixture(scope="module")
def chain():
    """A private anvil per test module, for modules that change state or time freely."""
    from helpers.accounts import DevChain

    c = DevChain.start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def worker(chain):
    """A simulation worker used synchronously, in-process."""
    from bundler.sim import SimConfig, SimWorker

    w = SimWorker(chain.url, SimConfig(chain_id=chain.chain_id))
    yield w
    w.close()


UNSAFE_EXECUTOR_KEY = "0x" + "7a" * 32


@pytest_asyncio.fixture(scope="session")
async def unsafe_rpc(anvil):
    """A second bundler with the ERC-7562 rules off (hence no second validation at bundle
    time). Its own executor key keeps it from racing the shared bundler for nonces."""
    from bundler.app import Bundler

    fund(anvil.url, Account.from_key(UNSAFE_EXECUTOR_KEY).address, 10_000 * 10**18)
    b = Bundler(bundler_config(anvil, unsafe=True, private_key=[UNSAFE_EXECUTOR_KEY]))
    await b.start()
    try:
        async with aiohttp.ClientSession() as session:
            client = RpcClient(b.url, session)
            await client.call("debug_bundler_setBundlingMode", "manual")
            yield client
    finally:
        await b.stop()


@pytest.fixture(scope="module")
def pg():
    """A private PostgreSQL server per test module (skips the module's tests when none can be started)."""
    from helpers.pg import PostgresUnavailable, start_postgres

    try:
        server = start_postgres()
    except PostgresUnavailable as e:
        pytest.skip(f"PostgreSQL tests skipped: {e}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def dsn(pg):
    """A fresh database on that server."""
    return pg.database()
