"""What differs between the EntryPoint versions, through eth_sendUserOperation on anvil for each
version (version data in bundler.entrypoint, not per-version code): v0.9's paymaster signature
outside the userOpHash, v0.9's block-number validity ranges, v0.9 ignoring the initCode of an
existing account."""
from __future__ import annotations

import pytest

from bundler.devchain.anvil import rpc as node_rpc
from bundler.sim.results import VALIDITY_BLOCK_RANGE_FLAG
from bundler.userop import format_user_operation, decode_user_operation
from helpers.erc7562_common import EPS, assert_error, assert_ok, make_worlds, send
from helpers.inproc import eventually, running_bundler

pytestmark = pytest.mark.asyncio
TIME_RANGE = -32503


@pytest.fixture(scope="module")
def worlds(anvil):
    return make_worlds(anvil)


def validation_data(valid_after: int, valid_until: int) -> bytes:
    """RulesEntity's payload that makes it return this validity range (0xbb | validationData)."""
    return b"\xbb" + ((valid_after << 208) | (valid_until << 160)).to_bytes(32, "big")


def head(url: str) -> int:
    return int(node_rpc(url, "eth_blockNumber", []), 16)


def blocks(after: int, until: int) -> bytes:
    return validation_data(VALIDITY_BLOCK_RANGE_FLAG | after, VALIDITY_BLOCK_RANGE_FLAG | until)


def op_with_range(w, role: str, payload: bytes):
    if role == "account":
        return w.op(w.entity(), payload)
    return w.op(w.entity(), paymaster=w.entity(paymaster=True), pm_payload=payload)


def range_op_maker(w, role: str):
    """The entities first (deploying them mines blocks), then ops with a given payload."""
    account = w.entity()
    paymaster = w.entity(paymaster=True) if role == "paymaster" else None
    if paymaster is None:
        return lambda payload: w.op(account, payload)
    return lambda payload: w.op(account, paymaster=paymaster, pm_payload=payload)


@pytest.mark.parametrize("ep", EPS)
@pytest.mark.parametrize("role", ["account", "paymaster"])
async def test_block_number_validity_range(rpc, clean_bundler, worlds, ep, role):
    """v0.9 reads a range with the top bit set in both bounds as block numbers: valid in the next
    block is accepted and mined, a range that ended or has not begun is -32503. Older
    EntryPoints read the same words as timestamps (far in the future: not valid yet)."""
    w = worlds[ep.version]
    now = head(w.url)
    answer = await send(rpc, op_with_range(w, role, blocks(now - 1, now + 100)), ep)
    if not ep.block_range_validity:
        assert_error(answer, TIME_RANGE, "not valid yet", f"the {role} returned validAfter")
        return
    assert_ok(answer)
    await rpc.call("debug_bundler_sendBundleNow")
    assert (await rpc.call("eth_getUserOperationReceipt", answer["result"]))["success"] is True
    make = range_op_maker(w, role)
    now = head(w.url)
    error = assert_error(await send(rpc, make(blocks(1, now)), ep), TIME_RANGE, "expired",
                         f"the {role} returned a block range valid up to block {now}",
                         f"the next block is {now + 1}")
    assert error["data"]["blockRange"] is True and error["data"]["nextBlock"] == now + 1
    # valid in the next block only: a bundle sent now may land one block later (like validUntil
    # before the latest expected inclusion time), and the margin (30 s = 30 one-second blocks)
    assert_error(await send(rpc, make(blocks(now - 1, now + 1)), ep), TIME_RANGE,
                 "expires before it can be included")
    assert_error(await send(rpc, make(blocks(now - 1, now + 10)), ep), TIME_RANGE, "stays valid only 8 blocks")
    # starting beyond --valid-after-max-wait (60 s = 60 blocks here): refused, not held
    assert_error(await send(rpc, make(blocks(now + 100, now + 300)), ep), TIME_RANGE,
                 f"the {role} returned a block range valid after block {now + 100}",
                 "holds not-yet-valid ops at most 60 blocks")


V09_ONLY = [p for p in EPS if p.values[0].block_range_validity]


def executor_nonce(bundler) -> int:
    return int(node_rpc(bundler.config.rpc_url, "eth_getTransactionCount", [bundler.executors[0].address, "latest"]), 16)


async def pending(rpc, op_hash: str) -> bool:
    found = await rpc.call("eth_getUserOperationByHash", op_hash)
    return found is not None and found["transactionHash"] is None


@pytest.mark.parametrize("ep", V09_ONLY)
@pytest.mark.parametrize("role", ["account", "paymaster"])
async def test_block_range_starting_soon_is_held_until_due_then_mined(rpc, clean_bundler, worlds, ep, role):
    """A block range that starts a few blocks ahead (within --valid-after-max-wait) is admitted
    and held, like a validAfter: no bundle while the next block is not past its start (the
    executor sends nothing), bundled and mined in the first block that is."""
    w = worlds[ep.version]
    make = range_op_maker(w, role)
    now = head(w.url)
    h = (answer := await send(rpc, make(blocks(now + 3, now + 200)), ep))["result"]
    assert_ok(answer)
    nonce = executor_nonce(clean_bundler)
    assert await rpc.call("debug_bundler_sendBundleNow") == "ok"  # the next block is now + 1
    assert await pending(rpc, h)
    node_rpc(w.url, "anvil_mine", [hex(2)])  # the next block is now + 3: not after now + 3 yet
    assert await rpc.call("debug_bundler_sendBundleNow") == "ok"
    assert await pending(rpc, h) and executor_nonce(clean_bundler) == nonce
    node_rpc(w.url, "evm_mine", [])  # the next block, now + 4, is in the range
    await rpc.call("debug_bundler_sendBundleNow")
    receipt = await rpc.call("eth_getUserOperationReceipt", h)
    assert receipt["success"] is True and int(receipt["receipt"]["blockNumber"], 16) == now + 4
    assert executor_nonce(clean_bundler) == nonce + 1  # one bundle, no reverted attempt


@pytest.mark.parametrize("ep", V09_ONLY)
async def test_bundle_check_runs_as_the_next_block(rpc, clean_bundler, worlds, ep):
    """A range valid after the head block is due in the next one: the pre-send check of the
    bundle (eth_call on the node, which runs as the head block unless told otherwise) must run
    with the next block's number, else the op is dropped with AA22 although it is valid."""
    w = worlds[ep.version]
    account = w.entity()
    now = head(w.url)
    assert_ok(answer := await send(rpc, w.op(account, blocks(now, now + 200)), ep))
    await rpc.call("debug_bundler_sendBundleNow")
    receipt = await rpc.call("eth_getUserOperationReceipt", answer["result"])
    assert receipt["success"] is True and int(receipt["receipt"]["blockNumber"], 16) == now + 1


@pytest.mark.parametrize("ep", V09_ONLY)
async def test_block_range_ending_while_pending_is_dropped_before_bundling(rpc, clean_bundler, worlds, ep):
    """Admitted with blocks to spare; the chain moves past the end of its range: the builder
    drops it with -32503 (visible through the receipt method) and sends no transaction."""
    w = worlds[ep.version]
    account = w.entity()
    now = head(w.url)
    assert_ok(answer := await send(rpc, w.op(account, blocks(now - 1, now + 40)), ep))
    node_rpc(w.url, "anvil_mine", [hex(40)])
    nonce = executor_nonce(clean_bundler)
    assert await rpc.call("debug_bundler_sendBundleNow") == "ok"
    error = (await rpc.request("eth_getUserOperationReceipt", answer["result"]))["error"]
    assert error["code"] == TIME_RANGE and f"block range ends at block {now + 40}" in error["message"], error
    assert executor_nonce(clean_bundler) == nonce
    assert await rpc.call("debug_bundler_dumpMempool", ep.address) == []


@pytest.mark.parametrize("ep", V09_ONLY)
async def test_block_range_the_pool_entry_does_not_know_is_held_not_dropped(rpc, clean_bundler, worlds, ep):
    """With a shared store, an op another instance admitted enters this pool from its stored
    record (pool.shared -> entry_from_record), which keeps no block range. The second validation
    finds that the range has not started: the op and its sender's next nonce are held, not
    dropped (nor sent to fail AA27 / AA25), and mined once the range starts."""
    from bundler.pool.requeue import entry_from_record

    w = worlds[ep.version]
    account = w.entity()
    now = head(w.url)
    first = w.op(account, blocks(now + 3, now + 200))
    hashes = [(await send(rpc, first, ep))["result"],
              (await send(rpc, w.op(account, blocks(now - 1, now + 200), nonce=first.nonce + 1), ep))["result"]]
    pool = clean_bundler.mempool
    for h in hashes:  # as the shared-store sync would hold them
        pool.remove(h)
        pool.add(entry_from_record(clean_bundler.store.get(h)))
    assert pool.get(hashes[0]).valid_after_block == 0
    nonce = executor_nonce(clean_bundler)
    assert await rpc.call("debug_bundler_sendBundleNow") == "ok"
    assert all([await pending(rpc, h) for h in hashes]) and executor_nonce(clean_bundler) == nonce
    assert pool.get(hashes[0]).valid_after_block == now + 3  # learnt: held by the builder from now on
    node_rpc(w.url, "anvil_mine", [hex(3)])
    await rpc.call("debug_bundler_sendBundleNow")
    for h in hashes:
        assert (await rpc.call("eth_getUserOperationReceipt", h))["success"] is True
    assert executor_nonce(clean_bundler) == nonce + 1


@pytest.mark.parametrize("ep", V09_ONLY)
async def test_unknown_block_range_in_unsafe_mode_is_held_at_the_bundle_check(anvil, worlds, ep):
    """The same without safe mode (no second validation): the bundle check's AA27 for an op
    whose entry did not know its range does not drop it; it is held with its sender's next
    nonce, and both are mined once the range starts."""
    from bundler.pool.requeue import entry_from_record

    w = worlds[ep.version]
    async with running_bundler(anvil, unsafe=True) as (b, client):
        account = w.entity()
        now = head(w.url)
        first = w.op(account, blocks(now + 3, now + 200))
        second = w.op(account, blocks(now - 1, now + 200), nonce=first.nonce + 1)
        hashes = [await client.call("eth_sendUserOperation", format_user_operation(op), ep.address)
                  for op in (first, second)]
        for h in hashes:  # as the shared-store sync would hold them
            b.mempool.remove(h)
            b.mempool.add(entry_from_record(b.store.get(h)))
        nonce = executor_nonce(b)
        assert await client.call("debug_bundler_sendBundleNow") == "ok"
        assert all([await pending(client, h) for h in hashes]) and executor_nonce(b) == nonce
        assert b.mempool.get(hashes[0]).valid_after_block == now + 3
        node_rpc(w.url, "anvil_mine", [hex(3)])
        await client.call("debug_bundler_sendBundleNow")
        for h in hashes:
            assert (await client.call("eth_getUserOperationReceipt", h))["success"] is True
        assert executor_nonce(b) == nonce + 1


@pytest.mark.parametrize("ep", V09_ONLY)
async def test_held_block_range_op_survives_a_restart(anvil, worlds, ep, tmp_path):
    """Block ranges are not stored: a restart validates the pending op again, learns its range,
    keeps holding it (the window still allows the wait) and mines it once due."""
    from helpers.inproc import new_key

    w = worlds[ep.version]
    account, key = w.entity(), new_key(anvil.url)
    settings = dict(data_dir=str(tmp_path), private_key=[key])
    async with running_bundler(anvil, **settings) as (_b, client):
        now = head(w.url)
        h = await client.call("eth_sendUserOperation", format_user_operation(w.op(account, blocks(now + 3, now + 200))),
                              ep.address)
    async with running_bundler(anvil, **settings) as (b, client):
        assert b.mempool.get(h).valid_after_block == now + 3
        assert await client.call("debug_bundler_sendBundleNow") == "ok" and await pending(client, h)
        node_rpc(w.url, "anvil_mine", [hex(3)])
        await client.call("debug_bundler_sendBundleNow")
        assert (await client.call("eth_getUserOperationReceipt", h))["success"] is True


@pytest.mark.parametrize("ep", V09_ONLY)
async def test_dev_chain_mines_while_a_block_range_op_waits(anvil, worlds, ep):
    """`bundler dev` (auto bundling, empty blocks while ops wait): a held block range comes due
    without anyone mining, and is mined in one bundle."""
    w = worlds[ep.version]
    async with running_bundler(anvil, bundle_mode="auto", dev_mine_when_held=True) as (b, client):
        account = w.entity()
        now = head(w.url)
        nonce = executor_nonce(b)
        h = await client.call("eth_sendUserOperation", format_user_operation(w.op(account, blocks(now + 3, now + 200))),
                              ep.address)
        receipt = await eventually(lambda: client.call("eth_getUserOperationReceipt", h), timeout=30,
                                   what="the held op mined once its block range starts")
        assert receipt["success"] is True and int(receipt["receipt"]["blockNumber"], 16) > now + 3
        assert b.builder.dev_miner.mined >= 1
        assert executor_nonce(b) == nonce + 1


@pytest.mark.parametrize("ep", EPS)
async def test_timestamp_ranges_keep_working(rpc, clean_bundler, worlds, ep):
    """the neighbour: a plain timestamp range (top bits clear) in every version"""
    w = worlds[ep.version]
    assert_ok(await send(rpc, op_with_range(w, "account", validation_data(1, 2**40)), ep))
    assert_error(await send(rpc, op_with_range(w, "account", validation_data(1, 2)), ep), TIME_RANGE, "expired")


def head_timestamp(url: str) -> int:
    return int(node_rpc(url, "eth_getBlockByNumber", ["latest", False])["timestamp"], 16)


@pytest.mark.parametrize("ep", EPS)
async def test_time_range_held_until_due_at_each_versions_strictness(rpc, clean_bundler, worlds, ep):
    """A validAfter a few seconds ahead is held, then bundled in the first block the EntryPoint
    accepts it in: v0.7 at timestamp >= validAfter, v0.8 and v0.9 only at timestamp > validAfter
    (bundling at == would revert AA22 on chain)."""
    w = worlds[ep.version]
    account = w.entity()
    t = head_timestamp(w.url)
    h = (answer := await send(rpc, w.op(account, validation_data(t + 3, 2**40)), ep))["result"]
    assert_ok(answer)
    nonce = executor_nonce(clean_bundler)
    assert await rpc.call("debug_bundler_sendBundleNow") == "ok" and await pending(rpc, h)
    node_rpc(w.url, "evm_mine", [t + 3])  # the head's timestamp is validAfter now
    if ep.valid_after_strict:
        assert await rpc.call("debug_bundler_sendBundleNow") == "ok" and await pending(rpc, h)
        assert executor_nonce(clean_bundler) == nonce
        node_rpc(w.url, "evm_mine", [t + 4])
    await rpc.call("debug_bundler_sendBundleNow")
    receipt = await rpc.call("eth_getUserOperationReceipt", h)
    assert receipt["success"] is True and executor_nonce(clean_bundler) == nonce + 1
    block = node_rpc(w.url, "eth_getBlockByNumber", [receipt["receipt"]["blockNumber"], False])
    assert int(block["timestamp"], 16) >= t + 3 + (1 if ep.valid_after_strict else 0)


@pytest.mark.parametrize("ep", EPS)
async def test_paymaster_signature(rpc, clean_bundler, worlds, ep):
    """v0.9: paymasterSignature travels in the RPC form, is appended to paymasterAndData and is
    not part of the userOpHash (the same op with another paymaster signature has the same hash);
    older EntryPoints refuse the field"""
    w = worlds[ep.version]
    op = w.op(w.entity(), paymaster=w.entity(paymaster=True), paymaster_signature=b"\x5a" * 65)
    answer = await send(rpc, op, ep)
    if not ep.paymaster_signature:
        assert_error(answer, -32602, "paymasterSignature")
        return
    assert_ok(answer)
    assert answer["result"] == "0x" + ep.user_op_hash(op, w.chain_id).hex()
    assert answer["result"] == "0x" + ep.user_op_hash(op.with_changes(paymaster_signature=b"\x01"), w.chain_id).hex()
    [pending] = await rpc.call("debug_bundler_dumpMempool", ep.address)
    assert pending["paymasterSignature"] == "0x" + "5a" * 65
    assert decode_user_operation(pending) == op
    await rpc.call("debug_bundler_sendBundleNow")
    receipt = await rpc.call("eth_getUserOperationReceipt", answer["result"])
    assert receipt["success"] is True
    by_hash = await rpc.call("eth_getUserOperationByHash", answer["result"])
    assert by_hash["userOperation"]["paymasterSignature"] == "0x" + "5a" * 65


@pytest.mark.parametrize("ep", EPS)
async def test_init_code_of_an_existing_account(rpc, clean_bundler, worlds, ep):
    """v0.9 ignores the initCode of an account that exists (the op goes through, IgnoredInitCode);
    v0.7/v0.8 reject it (AA10)"""
    w = worlds[ep.version]
    first = w.deploy_op(w.factory())
    assert_ok(answer := await send(rpc, first, ep))
    await rpc.call("debug_bundler_sendBundleNow")
    assert (await rpc.call("eth_getUserOperationReceipt", answer["result"]))["success"] is True
    again = w.op(first.sender, factory=first.factory, factory_data=first.factory_data,
                 verification_gas_limit=first.verification_gas_limit)
    answer = await send(rpc, again, ep)
    if ep.version in ("0.7", "0.8"):
        assert_error(answer, -32500, "AA10")
        return
    assert_ok(answer)
    await rpc.call("debug_bundler_sendBundleNow")
    assert (await rpc.call("eth_getUserOperationReceipt", answer["result"]))["success"] is True

