"""Time ranges are judged at the time an op will be included, not at the head block (issue 8
item 3). Through eth_sendUserOperation of a real bundler on anvil, for session ops (the
SessionAccount returns the session's window) and for a paymaster's time range (the sample
VerifyingPaymaster of v0.7):

  a. validUntil between the head block and the block that would include the op: refused with
     -32503, and the executor sends nothing (an op admitted earlier whose validUntil comes
     before its inclusion is dropped before bundling);
  b. validAfter equal to the latest block's timestamp (v0.8 wants timestamp > validAfter): the
     op is accepted and mined, not dropped with AA22;
  c. validAfter a few seconds ahead: held in the pool (not bundled) until a block makes it due,
     then mined; on a dev chain that mines only on transactions, the builder mines empty
     blocks while ops wait (dev_mine_when_held, the `bundler dev` default);
  d. the sessions guide's `valid_after=now` example on `bundler dev`.

Where the chain's timestamps are steered (evm_setNextBlockTimestamp / evm_mine with a
timestamp), the test plays a chain with 12-second slots.
"""
from __future__ import annotations

import asyncio
import time

import pytest
from eth_account import Account

from bundler.entrypoint import V07, V08
from session_sdk.types import SessionSpec, TransferPolicy
from session_sdk.calldata import encode_execute, encode_grant_session
from bundler.userop import format_user_operation
from conftest import RpcError
from helpers.accounts import DevChain, mine
from helpers.inproc import eventually, running_bundler
from helpers.paymaster import VerifyingPaymasterHelper
from helpers.sessions import (
    TEST_GAS, SessionAccountHandle, block_timestamp, deploy_session_contracts, get_balance, new_key,
    rpc as node_rpc, send_tx, set_balance,
)

pytestmark = pytest.mark.asyncio
EPS = [pytest.param(V07, id="v0.7"), pytest.param(V08, id="v0.8")]
ETH = 10**18
HOUR = 3600
SLOT = 12


@pytest.fixture(scope="module")
def chain():
    c = DevChain.start()
    try:
        c.sessions = deploy_session_contracts(c.url)
        yield c
    finally:
        c.stop()


@pytest.fixture
def automine(chain):
    yield
    node_rpc(chain.url, "evm_setAutomine", [True])


# ------------------------------------------------------------------ helpers


def account(chain, ep) -> SessionAccountHandle:
    acct = SessionAccountHandle.create(chain.url, chain.chain_id, ep, chain.sessions)
    acct.verification_gas, acct.call_gas = 400_000, 200_000
    return acct


def grant(chain, acct, valid_after: int = 0, valid_until: int = 0, at: int | None = None) -> str:
    """A new session key granted by the owner's own transaction, in a block with timestamp `at`
    if given; returns the key."""
    key, signer = new_key()
    spec = SessionSpec(signer=signer, valid_after=valid_after, valid_until=valid_until,
                       transfer_policies=(TransferPolicy(max_value_per_use=ETH),), gas=TEST_GAS)
    set_balance(chain.url, acct.owner, ETH)
    node_rpc(chain.url, "anvil_impersonateAccount", [acct.owner])
    if at is not None:
        node_rpc(chain.url, "evm_setNextBlockTimestamp", [at])
    send_tx(chain.url, acct.address, encode_grant_session(spec), sender=acct.owner)
    return key


def session_op(acct, key, nonce: int | None = None) -> dict:
    call = encode_execute(new_key()[1], 1)
    return format_user_operation(acct.sign_session(acct.build(call, nonce=nonce), key))


async def refused(client, op: dict, ep, code: int) -> RpcError:
    with pytest.raises(RpcError) as e:
        await client.call("eth_sendUserOperation", op, ep.address)
    assert e.value.code == code, e.value
    return e.value


async def pending(client, h: str) -> bool:
    found = await client.call("eth_getUserOperationByHash", h)
    return found is not None and found["transactionHash"] is None


async def mined_block(client, url: str, h: str) -> dict:
    receipt = await client.call("eth_getUserOperationReceipt", h)
    assert receipt is not None and receipt["success"] is True, receipt
    return node_rpc(url, "eth_getBlockByNumber", [receipt["receipt"]["blockNumber"], False])


async def dropped(client, h: str):
    try:
        await client.call("eth_getUserOperationReceipt", h)
    except RpcError as e:
        return e
    return None


def executor_state(chain, b) -> tuple[int, int]:
    address = b.executors[0].address
    return (int(node_rpc(chain.url, "eth_getTransactionCount", [address, "latest"]), 16),
            get_balance(chain.url, address))


async def slots(chain, b, start: int, count: int) -> int:
    """Mine `count` blocks SLOT seconds apart after timestamp `start`, each seen by the bundler
    (so it measures the chain's block time); returns the last timestamp."""
    ts = start
    for _ in range(count):
        ts += SLOT
        node_rpc(chain.url, "evm_mine", [ts])
        number = int(node_rpc(chain.url, "eth_blockNumber", []), 16)
        await eventually(lambda: b.head.latest is not None and b.head.latest.number >= number,
                         what=f"the bundler to see block {number}")
    assert b.head.clock.block_time == SLOT
    return ts


# ------------------------------------------------------------------ a. validUntil before inclusion


async def test_valid_until_before_inclusion_is_refused_and_the_executor_pays_nothing(chain):
    async with running_bundler(chain, valid_until_margin=0) as (b, client):
        acct = account(chain, V08)
        g = block_timestamp(chain.url) + 1
        # sessions granted in one block at g; the chain then runs on 12-second slots up to head t
        t = g + 8 * SLOT
        expiring = grant(chain, acct, valid_until=t + 5, at=g)
        control = grant(chain, acct, valid_until=t + 3 * SLOT)
        later = grant(chain, acct, valid_until=t + 4 * SLOT)
        assert await slots(chain, b, g, 8) == t == block_timestamp(chain.url)
        before = executor_state(chain, b)

        # valid at the head block (t <= t + 5) but not in the next one (t + 12): refused
        node_rpc(chain.url, "evm_setNextBlockTimestamp", [t + SLOT])
        err = await refused(client, session_op(acct, expiring), V08, -32503)
        assert err.data["rule"] in ("SessionExpired", "SessionExpiresTooSoon") and "include" in err.message
        assert await client.call("debug_bundler_sendBundleNow") == "ok"  # nothing to bundle
        assert executor_state(chain, b) == before

        # a session valid past the expected inclusion is accepted and mined in the next slot
        h = await client.call("eth_sendUserOperation", session_op(acct, control), V08.address)
        await client.call("debug_bundler_sendBundleNow")
        assert int((await mined_block(client, chain.url, h))["timestamp"], 16) == t + SLOT

        # admitted while it could still be included; two slots later it cannot: dropped before
        # bundling with -32503, and again no transaction
        h = await client.call("eth_sendUserOperation", session_op(acct, later), V08.address)
        await slots(chain, b, t + SLOT, 2)
        before = executor_state(chain, b)
        await client.call("debug_bundler_sendBundleNow")
        e = await eventually(lambda: dropped(client, h), what="the expiring op dropped")
        assert e.code == -32503 and "expire" in e.message
        assert executor_state(chain, b) == before
        assert await client.call("debug_bundler_dumpMempool", V08.address) == []


async def test_paymaster_valid_until_before_inclusion_is_refused(chain):
    pm = VerifyingPaymasterHelper.deploy(chain.url, V07)
    pm.deposit(ETH)
    mine(chain.url)
    async with running_bundler(chain, valid_until_margin=0) as (b, client):
        acct = chain.account(V07, funded=0)
        t = await slots(chain, b, block_timestamp(chain.url), 5)
        node_rpc(chain.url, "evm_setNextBlockTimestamp", [t + SLOT])
        op = acct.sign(pm.attach(acct.op(acct.execute(acct.owner, 0, b"")), valid_until=t + 5), chain.chain_id)
        before = executor_state(chain, b)
        err = await refused(client, format_user_operation(op), V07, -32503)
        assert "paymaster" in err.message and "include" in err.message
        assert err.data["validUntil"] == t + 5 and err.data["earliestInclusion"] > t
        assert executor_state(chain, b) == before


# ------------------------------------------------------------------ b. validAfter == head timestamp


@pytest.mark.parametrize("ep", EPS)
async def test_valid_after_equal_to_the_head_timestamp_is_accepted_and_mined(chain, ep):
    """The `bundler dev` setup (auto bundling, empty blocks while ops wait). anvil may give the
    next block the head's own timestamp, which v0.8 refuses for validAfter == timestamp: the op
    waits for a later block instead of being sent into an AA22 revert or dropped."""
    async with running_bundler(chain, bundle_mode="auto", dev_mine_when_held=True) as (b, client):
        acct = account(chain, ep)
        g = block_timestamp(chain.url) + 1
        key = grant(chain, acct, valid_after=g, valid_until=g + HOUR, at=g)
        assert block_timestamp(chain.url) == g  # the session starts at the latest block's timestamp
        nonce = executor_state(chain, b)[0]
        h = await client.call("eth_sendUserOperation", session_op(acct, key), ep.address)
        await eventually(lambda: client.call("eth_getUserOperationReceipt", h), what="the op mined")
        block = await mined_block(client, chain.url, h)
        assert int(block["timestamp"], 16) >= g + (1 if ep.valid_after_strict else 0)
        assert executor_state(chain, b)[0] == nonce + 1  # one bundle, no reverted attempt before it


# ------------------------------------------------------------------ c. validAfter a few seconds ahead


@pytest.mark.parametrize("ep", EPS)
async def test_valid_after_a_few_seconds_ahead_is_held_until_a_block_makes_it_due(chain, ep):
    async with running_bundler(chain) as (b, client):
        acct = account(chain, ep)
        g = block_timestamp(chain.url) + 1
        key = grant(chain, acct, valid_after=g + 5, valid_until=g + HOUR, at=g)
        start = acct.nonce()
        h = await client.call("eth_sendUserOperation", session_op(acct, key, start), ep.address)
        # a follow-up op of the same sender waits with it (it would fail on the nonce alone)
        h2 = await client.call("eth_sendUserOperation", session_op(acct, key, start + 1), ep.address)
        before = executor_state(chain, b)
        assert await client.call("debug_bundler_sendBundleNow") == "ok"  # held: nothing sent
        assert await pending(client, h) and await pending(client, h2)
        assert executor_state(chain, b) == before
        info = await client.call("session_getSession", acct.address, Account.from_key(key).address)
        assert info["pendingOps"] == [h, h2]

        node_rpc(chain.url, "evm_mine", [g + 6])  # the chain's next block: the op is due after it
        await client.call("debug_bundler_sendBundleNow")
        for op_hash in (h, h2):
            block = await mined_block(client, chain.url, op_hash)
            assert int(block["timestamp"], 16) > g + 5
        assert executor_state(chain, b)[0] == before[0] + 1

        # beyond valid_after_max_wait (60 s): refused, not held
        far = grant(chain, acct, valid_after=block_timestamp(chain.url) + 120, valid_until=g + HOUR)
        err = await refused(client, session_op(acct, far), ep, -32503)
        assert err.data["rule"] == "SessionNotYetValid" and "holds ops" in err.message


async def test_paymaster_valid_after_ahead_is_held_then_mined(chain):
    pm = VerifyingPaymasterHelper.deploy(chain.url, V07)
    pm.deposit(ETH)
    mine(chain.url)
    async with running_bundler(chain) as (b, client):
        acct = chain.account(V07, funded=0)
        head = block_timestamp(chain.url)
        op = acct.sign(pm.attach(acct.op(acct.execute(acct.owner, 0, b"")), valid_after=head + 5), chain.chain_id)
        h = await client.call("eth_sendUserOperation", format_user_operation(op), V07.address)
        assert await client.call("debug_bundler_sendBundleNow") == "ok"
        assert await pending(client, h)
        node_rpc(chain.url, "evm_mine", [head + 5])
        await client.call("debug_bundler_sendBundleNow")
        assert int((await mined_block(client, chain.url, h))["timestamp"], 16) >= head + 5


@pytest.mark.parametrize("ep", EPS)
async def test_dev_chain_mines_while_an_op_waits_for_its_valid_after(chain, ep):
    """Automine only mines on transactions: without the builder's empty blocks the held op
    would wait forever. No sleep here: the receipt is polled with a deadline."""
    async with running_bundler(chain, bundle_mode="auto", dev_mine_when_held=True) as (b, client):
        acct = account(chain, ep)
        g = block_timestamp(chain.url) + 1
        key = grant(chain, acct, valid_after=g + 3, valid_until=g + HOUR, at=g)
        nonce = executor_state(chain, b)[0]
        h = await client.call("eth_sendUserOperation", session_op(acct, key), ep.address)
        receipt = await eventually(lambda: client.call("eth_getUserOperationReceipt", h), timeout=30,
                                   what="the held op mined once due")
        assert receipt["success"] is True
        block = node_rpc(chain.url, "eth_getBlockByNumber", [receipt["receipt"]["blockNumber"], False])
        assert int(block["timestamp"], 16) >= g + 3 + (1 if ep.valid_after_strict else 0)
        assert b.builder.dev_miner.mined >= 1
        assert executor_state(chain, b)[0] == nonce + 1  # one bundle, no reverted attempt before it


# ------------------------------------------------------------------ d. the guide on bundler dev


async def test_the_guides_valid_after_now_works_on_bundler_dev(tmp_path):
    """docs/sessions.md grants with `now = int(time.time())`, `valid_after=now` and uses the
    session right away: on `bundler dev` (anvil automine) the op is mined, not dropped."""
    from helpers.procs import call
    from helpers.relay import DevBundler

    dev = DevBundler(tmp_path)
    try:
        chain_id = int(call(dev.node_url, "eth_chainId"), 16)
        acct = SessionAccountHandle.create(dev.node_url, chain_id, V08, deploy_session_contracts(dev.node_url))
        acct.verification_gas, acct.call_gas = 400_000, 200_000
        key, signer = new_key()
        now = int(time.time())
        spec = SessionSpec(signer=signer, valid_after=now, valid_until=now + 3 * HOUR,
                           transfer_policies=(TransferPolicy(max_value_per_use=ETH),), gas=TEST_GAS)
        set_balance(dev.node_url, acct.owner, ETH)
        node_rpc(dev.node_url, "anvil_impersonateAccount", [acct.owner])
        send_tx(dev.node_url, acct.address, encode_grant_session(spec), sender=acct.owner)
        h = call(dev.url, "eth_sendUserOperation", session_op(acct, key), V08.address)
        deadline = time.monotonic() + 30
        receipt = None
        while receipt is None:  # bounded poll, no fixed sleep
            assert time.monotonic() < deadline, f"op {h} not mined within 30 s:\n{dev.log()[-3000:]}"
            receipt = call(dev.url, "eth_getUserOperationReceipt", h)
            if receipt is None:
                await asyncio.sleep(0.1)
        assert receipt["success"] is True
        block = node_rpc(dev.node_url, "eth_getBlockByNumber", [receipt["receipt"]["blockNumber"], False])
        assert int(block["timestamp"], 16) > now
    finally:
        dev.stop()


async def test_inclusion_window_bounds():
    """The bounds from the headers alone: earliest = head + shortest interval seen (0 until two
    consecutive blocks are seen, and on a chain that repeats timestamps), latest = one block
    time (median) after the next block, the chain's clock taken from the largest offset seen."""
    from bundler.chain.clock import MAX_BLOCK_TIME_S, InclusionClock
    from bundler.sim import PinnedBlock

    wall = [1000.0]
    clock = InclusionClock(wall=lambda: wall[0])

    def head(number, ts):
        clock.observe(number, ts)
        return PinnedBlock(number=number, timestamp=ts, base_fee=0, gas_limit=30_000_000)

    w = clock.window(head(1, 1000))
    assert (w.earliest, w.latest) == (1000, 1002)  # nothing measured: block time 1, interval 0
    for n in range(2, 6):  # 12-second slots, each header seen 2 s after its timestamp
        wall[0] = 1000 + (n - 1) * 12 + 2
        h = head(n, 1000 + (n - 1) * 12)
    w = clock.window(h)
    assert clock.block_time == 12 and (w.earliest, w.latest) == (h.timestamp + 12, h.timestamp + 24)
    assert w.due(h.timestamp + 12, strict=False) and not w.due(h.timestamp + 12, strict=True)
    assert w.wait_s(h.timestamp + 15, strict=True) == 4
    wall[0] += 100  # no block for 100 s: the next one is at least the chain's clock now
    assert clock.window(h).latest >= wall[0] + 12
    h = head(6, h.timestamp)  # anvil: same timestamp as its parent
    assert clock.window(h).earliest == h.timestamp
    for n in range(7, 60):  # an idle dev chain: hour-long gaps are no block time
        h = head(n, h.timestamp + 3600)
    assert clock.block_time == MAX_BLOCK_TIME_S

