"""eth_sendUserOperation and the head block (admission_head_max_age_ms): admissions reuse the
head the tracker confirmed a moment ago instead of asking the node for a header per op, and an
op refused on that head is judged again on the node's newer head, so an op made valid by a
block the bundler has not seen yet is not refused."""
from __future__ import annotations

import pytest

from bundler.entrypoint import V07
from bundler.userop import format_user_operation
from helpers.bundlers import funded_account, running_bundler, signed_op

pytestmark = pytest.mark.asyncio

# the tracker never polls on its own in these tests: only admissions move its head
STILL = dict(head_poll_interval=3600.0, admission_head_max_age_ms=3_600_000)


def _count_headers(b) -> list:
    asked: list = []
    header = b.node.header

    async def counted(tag="latest"):
        asked.append(tag)
        return await header(tag)

    b.node.header = counted
    return asked


async def test_admissions_on_an_unchanged_head_ask_for_no_header(anvil):
    accts = [funded_account(anvil, V07) for _ in range(3)]
    async with running_bundler(anvil, **STILL) as (b, rpc):
        await b.head.fresh()  # the head as of now, confirmed
        asked = _count_headers(b)
        for a in accts:
            assert (await rpc.request("eth_sendUserOperation", signed_op(anvil, a), V07.address)).get("result")
        assert asked == []


async def test_an_op_valid_only_in_a_block_the_bundler_has_not_seen_is_admitted(anvil):
    async with running_bundler(anvil, **STILL) as (b, rpc):
        await b.head.fresh()
        seen = b.head.latest.number
        acct = funded_account(anvil, V07)  # deployed in a block mined after `seen`
        asked = _count_headers(b)
        answer = await rpc.request("eth_sendUserOperation", signed_op(anvil, acct), V07.address)
        assert answer.get("result"), answer  # on block `seen` the account has no code yet: AA20
        assert asked == ["latest"]  # the refusal on the old head sent it to the node's head
        assert b.head.latest.number > seen


async def test_a_refusal_on_the_latest_head_is_final_and_unchanged(anvil):
    acct = funded_account(anvil, V07)
    async with running_bundler(anvil, **STILL) as (b, rpc):
        await b.head.fresh()
        asked = _count_headers(b)
        op = acct.sign(acct.op(acct.execute(acct.owner, 1)), anvil.chain_id, key="0x" + "11" * 32)
        bad = format_user_operation(op)  # signed by a key that is not the owner's
        answer = await rpc.request("eth_sendUserOperation", bad, V07.address)
        assert answer["error"]["code"] == -32507  # signature invalid
        assert asked == ["latest"]  # the head was asked once, then the refusal stood
