"""An in-process bundler with its own executor key on a test chain, served over HTTP, for
tests that steer the chain (automine off, reorgs) and read the bundler's counters."""
from __future__ import annotations

import asyncio
import contextlib
import os
import time

import aiohttp
from eth_account import Account

from bundler.devchain.anvil import rpc
from bundler.userop import format_user_operation
from conftest import RpcClient, bundler_config


def new_key(url: str, balance: int = 100 * 10**18) -> str:
    key = "0x" + os.urandom(32).hex()
    rpc(url, "anvil_setBalance", [Account.from_key(key).address, hex(balance)])
    rpc(url, "evm_mine", [])
    return key


@contextlib.asynccontextmanager
async def running_bundler(chain, **overrides):
    """(bundler, rpc client); a fresh executor key unless private_key is given."""
    from bundler.app import Bundler

    overrides.setdefault("private_key", [new_key(chain.url)])
    b = Bundler(bundler_config(chain, **overrides))
    await b.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield b, RpcClient(b.url, session)
    finally:
        await b.stop()


async def eventually(fn, timeout: float = 30.0, interval: float = 0.1, what: str = "condition"):
    """Poll fn (sync or async) without blocking the event loop the bundler runs on."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)


def pool_txs(url: str, address: str) -> dict:
    """nonce (str) -> tx of `address` in the node's pending pool."""
    pending = rpc(url, "txpool_content", [])["pending"]
    return next((txs for sender, txs in pending.items() if sender.lower() == address.lower()), {})


async def send_op(client: RpcClient, chain, acct, **changes) -> str:
    op = acct.sign(acct.op(acct.execute("0x" + os.urandom(20).hex(), 1), **changes), chain.chain_id)
    return await client.call("eth_sendUserOperation", format_user_operation(op), acct.ep.address)


def set_automine(url: str, on: bool) -> None:
    rpc(url, "evm_setAutomine", [on])
