"""ERC-7562 reputation through the real RPC of a bundler on anvil: what admission counts as
seen, what a mined bundle counts as included, throttled and banned entities refused with
-32504, the unstaked paymaster allowance (-32505), hourly decay on a controlled clock, and the
blame for ops that fail at bundle time."""
from __future__ import annotations

import pytest

from bundler.devchain.anvil import rpc as node_rpc
from bundler.entrypoint import V07, V08, V09
from bundler.pool.reputation import OpEntities, ReputationBook, ReputationParams, Status, blame
from bundler.userop import format_user_operation
from conftest import RpcError
from helpers.accounts import SimpleAccountHelper, mine
from helpers.entities import (
    account_op, add_stake, deploy_bytecode, drain_deposit, make_account, make_paymaster, paymaster_op,
)

EPS = [pytest.param(V07, id="v0.7"), pytest.param(V08, id="v0.8"), pytest.param(V09, id="v0.9")]


async def send(rpc, op, ep) -> str:
    return await rpc.call("eth_sendUserOperation", format_user_operation(op), ep.address)


async def send_error(rpc, op, ep) -> RpcError:
    with pytest.raises(RpcError) as e:
        await send(rpc, op, ep)
    return e.value


async def reputation_of(rpc, ep, address) -> dict | None:
    for entry in await rpc.call("debug_bundler_dumpReputation", ep.address):
        if entry["address"].lower() == address.lower():
            return entry
    return None


async def set_reputation(rpc, ep, address, seen, included):
    assert await rpc.call("debug_bundler_setReputation",
                          [{"address": address, "opsSeen": hex(seen), "opsIncluded": hex(included)}],
                          ep.address) == "ok"


class FakeClock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(clean_bundler):
    book = clean_bundler.reputation.book
    saved = book.clock
    book.clock = fake = FakeClock()
    book.clear()
    yield fake
    book.clock = saved
    book.clear()


# ---------------------------------------------------------------- seen / included


@pytest.mark.parametrize("ep", EPS)
async def test_seen_at_admission_included_when_mined(rpc, anvil, clean_bundler, ep):
    account = make_account(anvil.url, ep)
    paymaster = make_paymaster(anvil.url, ep)
    await send(rpc, paymaster_op(anvil.url, ep, account, paymaster), ep)

    assert await reputation_of(rpc, ep, paymaster) == {
        "address": paymaster_checksum(paymaster), "opsSeen": "0x1", "opsIncluded": "0x0", "status": "0x0"}
    # an unstaked sender is not an entity: limited by the per-sender count instead
    assert await reputation_of(rpc, ep, account) is None
    # reputation is kept per EntryPoint
    other = V08 if ep is V07 else V07
    assert await rpc.call("debug_bundler_dumpReputation", other.address) == []

    await rpc.call("debug_bundler_sendBundleNow")
    entry = await reputation_of(rpc, ep, paymaster)
    assert (entry["opsSeen"], entry["opsIncluded"], entry["status"]) == ("0x1", "0x1", "0x0")


def paymaster_checksum(address: str) -> str:
    from eth_utils import to_checksum_address
    return to_checksum_address(address)


@pytest.mark.parametrize("ep", EPS)
async def test_staked_sender_is_counted_and_not_held_to_four_ops(rpc, anvil, clean_bundler, ep):
    account = make_account(anvil.url, ep)
    add_stake(anvil.url, ep, account)
    hashes = [await send(rpc, account_op(anvil.url, ep, account, key=k), ep) for k in range(6)]
    entry = await reputation_of(rpc, ep, account)
    assert (entry["opsSeen"], entry["status"]) == ("0x6", "0x0")
    await rpc.call("debug_bundler_sendBundleNow")
    for h in hashes:
        assert (await rpc.call("eth_getUserOperationReceipt", h))["success"] is True
    assert (await reputation_of(rpc, ep, account))["opsIncluded"] == "0x6"


async def test_factory_is_counted(rpc, anvil, clean_bundler):
    ep = V07
    factory = anvil.deployment.factories[ep.version]
    acct = SimpleAccountHelper.counterfactual(anvil.url, ep, factory)
    node_rpc(anvil.url, "anvil_setBalance", [acct.address, hex(10**18)])
    mine(anvil.url)
    await send(rpc, acct.sign(acct.op(acct.execute(acct.address, 0)), anvil.chain_id), ep)
    entry = await reputation_of(rpc, ep, factory)
    assert (entry["opsSeen"], entry["opsIncluded"]) == ("0x1", "0x0")
    await rpc.call("debug_bundler_sendBundleNow")
    assert (await reputation_of(rpc, ep, factory))["opsIncluded"] == "0x1"


# ---------------------------------------------------------------- throttled / banned


@pytest.mark.parametrize("ep", EPS)
async def test_throttled_paymaster_keeps_four_ops_in_the_mempool(rpc, anvil, clean_bundler, ep):
    paymaster = make_paymaster(anvil.url, ep)
    # opsSeen // 10 = 12 > 0 + THROTTLING_SLACK, not above BAN_SLACK
    await set_reputation(rpc, ep, paymaster, 120, 0)
    assert (await reputation_of(rpc, ep, paymaster))["status"] == "0x1"
    accounts = [make_account(anvil.url, ep) for _ in range(5)]
    for a in accounts[:4]:
        await send(rpc, paymaster_op(anvil.url, ep, a, paymaster), ep)
    err = await send_error(rpc, paymaster_op(anvil.url, ep, accounts[4], paymaster), ep)
    assert err.code == -32504
    assert "paymaster" in err.message and paymaster_checksum(paymaster) in err.message
    assert "throttled" in err.message
    assert err.data["status"] == "throttled"
    # a throttled entity's ops still go into bundles (up to THROTTLED_ENTITY_BUNDLE_COUNT)
    await rpc.call("debug_bundler_sendBundleNow")
    assert await rpc.call("debug_bundler_dumpMempool", ep.address) == []
    await send(rpc, paymaster_op(anvil.url, ep, accounts[4], paymaster), ep)


@pytest.mark.parametrize("ep", EPS)
async def test_banned_paymaster_is_refused(rpc, anvil, clean_bundler, ep):
    account = make_account(anvil.url, ep)
    paymaster = make_paymaster(anvil.url, ep)
    await set_reputation(rpc, ep, paymaster, 1000, 0)  # 100 > 0 + BAN_SLACK
    assert (await reputation_of(rpc, ep, paymaster))["status"] == "0x2"
    err = await send_error(rpc, paymaster_op(anvil.url, ep, account, paymaster), ep)
    assert err.code == -32504
    assert f"paymaster {paymaster_checksum(paymaster)} is banned" in err.message
    # included ops make up for the seen ones
    await set_reputation(rpc, ep, paymaster, 1000, 90)
    assert (await reputation_of(rpc, ep, paymaster))["status"] == "0x0"
    await send(rpc, paymaster_op(anvil.url, ep, account, paymaster), ep)


@pytest.mark.parametrize("ep", EPS)
async def test_banned_factory_is_refused(rpc, anvil, clean_bundler, ep):
    factory = anvil.deployment.factories[ep.version]
    acct = SimpleAccountHelper.counterfactual(anvil.url, ep, factory)
    node_rpc(anvil.url, "anvil_setBalance", [acct.address, hex(10**18)])
    mine(anvil.url)
    await set_reputation(rpc, ep, factory, 10_000, 0)
    err = await send_error(rpc, acct.sign(acct.op(), anvil.chain_id), ep)
    assert err.code == -32504
    assert f"factory {paymaster_checksum(factory)} is banned" in err.message


async def test_banned_entity_pending_ops_are_dropped_at_bundle_time(rpc, anvil, clean_bundler):
    ep = V07
    account = make_account(anvil.url, ep)
    paymaster = make_paymaster(anvil.url, ep)
    h = await send(rpc, paymaster_op(anvil.url, ep, account, paymaster), ep)
    await set_reputation(rpc, ep, paymaster, 10_000, 0)
    assert await rpc.call("debug_bundler_sendBundleNow") == "ok"
    with pytest.raises(RpcError) as e:
        await rpc.call("eth_getUserOperationReceipt", h)
    assert e.value.code == -32504 and "banned" in e.value.message


async def test_throttled_entity_ops_leave_after_live_blocks(rpc, anvil, clean_bundler):
    ep = V08
    account = make_account(anvil.url, ep)
    paymaster = make_paymaster(anvil.url, ep)
    h = await send(rpc, paymaster_op(anvil.url, ep, account, paymaster), ep)
    await set_reputation(rpc, ep, paymaster, 120, 0)
    node_rpc(anvil.url, "anvil_mine", [hex(clean_bundler.config.throttled_entity_live_blocks + 1)])
    assert await rpc.call("debug_bundler_sendBundleNow") == "ok"
    with pytest.raises(RpcError) as e:
        await rpc.call("eth_getUserOperationReceipt", h)
    assert e.value.code == -32504 and "throttled" in e.value.message


# ---------------------------------------------------------------- unstaked paymaster (UREP-020)


@pytest.mark.parametrize("ep", EPS)
async def test_unstaked_paymaster_allowance_then_stake(rpc, anvil, clean_bundler, ep):
    limit = clean_bundler.config.same_unstaked_entity_mempool_count
    paymaster = make_paymaster(anvil.url, ep)
    accounts = [make_account(anvil.url, ep) for _ in range((limit + 1 + 3) // 4)]
    ops = [paymaster_op(anvil.url, ep, accounts[i // 4], paymaster, key=i % 4) for i in range(limit + 1)]
    for op in ops[:limit]:
        await send(rpc, op, ep)
    err = await send_error(rpc, ops[limit], ep)
    assert err.code == -32505
    assert f"unstaked paymaster {paymaster_checksum(paymaster)}" in err.message and "stake" in err.message

    # staked, the paymaster is only limited by its reputation (SREP-040)
    add_stake(anvil.url, ep, paymaster)
    await send(rpc, ops[limit], ep)
    await rpc.call("debug_bundler_clearMempool")


async def test_inclusion_record_raises_the_unstaked_allowance(clean_bundler):
    rules = clean_bundler.reputation
    pm = "0x" + "ab" * 20
    base = rules.params.same_unstaked_entity_mempool_count
    assert rules.ops_allowed_unstaked(V07, pm) == base
    rules.book.set(V07, pm, 40, 20)  # inclusion rate 1/2 times 20 included
    assert rules.ops_allowed_unstaked(V07, pm) == base + 10
    rules.book.clear()


@pytest.mark.parametrize("ep", EPS)
async def test_paymaster_deposit_covers_all_pending_ops(rpc, anvil, clean_bundler, ep):
    """EREP-010: one op alone fits the deposit, the second would not."""
    account = make_account(anvil.url, ep)
    op = paymaster_op(anvil.url, ep, account, paymaster="0x" + "00" * 20)
    cost = op.total_gas_limit() * op.max_fee_per_gas
    paymaster = make_paymaster(anvil.url, ep, deposit=cost * 3 // 2)
    await send(rpc, paymaster_op(anvil.url, ep, account, paymaster, key=0), ep)
    err = await send_error(rpc, paymaster_op(anvil.url, ep, account, paymaster, key=1), ep)
    assert err.code == -32508 and "deposit" in err.message


# ---------------------------------------------------------------- decay


async def test_hourly_decay(rpc, anvil, clean_bundler, clock):
    ep = V07
    pm = "0x" + "cd" * 20
    await set_reputation(rpc, ep, pm, 240, 0)
    assert (await reputation_of(rpc, ep, pm))["status"] == "0x1"  # 24 > 10
    clock.now += 3599
    assert (await reputation_of(rpc, ep, pm))["opsSeen"] == hex(240)
    clock.now += 1
    assert (await reputation_of(rpc, ep, pm))["opsSeen"] == hex(240 * 23 // 24)
    clock.now += 2 * 3600
    seen = 240
    for _ in range(3):
        seen = seen * 23 // 24
    entry = await reputation_of(rpc, ep, pm)
    assert entry["opsSeen"] == hex(seen) and entry["status"] == "0x1"
    clock.now += 24 * 3600
    for _ in range(24):
        seen = seen * 23 // 24
    entry = await reputation_of(rpc, ep, pm)
    assert entry["opsSeen"] == hex(seen) and entry["status"] == "0x0"  # 68 // 10 <= 10
    clock.now += 200 * 3600  # decayed to nothing: the entry goes away
    assert await reputation_of(rpc, ep, pm) is None


def test_decay_of_both_counters():
    clock = FakeClock()
    book = ReputationBook(ReputationParams(), clock)
    book.set(V07, "0x01", 1000, 100)
    clock.now += 3600 * 4
    e = book.get(V07, "0x01")
    seen, included = 1000, 100
    for _ in range(4):
        seen, included = seen * 23 // 24, included * 23 // 24
    assert (e.ops_seen, e.ops_included) == (seen, included)


def test_status_thresholds():
    book = ReputationBook(ReputationParams())
    # max_seen = opsSeen // 10; throttled above opsIncluded + 10, banned above opsIncluded + 50
    cases = [((109, 0), Status.OK), ((110, 0), Status.THROTTLED), ((119, 1), Status.OK),
             ((509, 0), Status.THROTTLED), ((510, 0), Status.BANNED), ((600, 10), Status.THROTTLED),
             ((610, 9), Status.BANNED), ((10_000, 0), Status.BANNED), ((0, 0), Status.OK)]
    for (seen, included), status in cases:
        book.set(V07, "0x02", seen, included)
        assert book.status(V07, "0x02") is status, (seen, included)
    clients = ReputationBook(ReputationParams(min_inclusion_denominator=100))
    clients.set(V07, "0x02", 1000, 0)
    assert clients.status(V07, "0x02") is Status.OK


def test_blame():
    from bundler.pool.reputation import EntityRef, FACTORY, PAYMASTER, SENDER

    def ents(sender_staked=False, factory=None, paymaster=True):
        refs = [EntityRef(SENDER, "0xa", sender_staked)]
        if factory is not None:
            refs.append(EntityRef(FACTORY, "0xf", factory))
        if paymaster:
            refs.append(EntityRef(PAYMASTER, "0xp", False))
        return OpEntities(tuple(refs))

    assert blame(ents(), "AA31").address == "0xp"
    assert blame(ents(sender_staked=True), "AA33").address == "0xa"  # EREP-030
    assert blame(ents(factory=False), "AA13").address == "0xf"
    assert blame(ents(factory=True), "AA23").address == "0xf"  # EREP-020
    assert blame(ents(factory=False), "AA21").address == "0xa"  # an unstaked factory is not accountable
    assert blame(ents(), "AA25") is None and blame(ents(factory=True), "AA10") is None  # races
    assert blame(ents(), None) is None and blame(ents(), "AA95") is None


def test_failed_revalidation_without_ban(clean_bundler):
    """A re-validation failure of an unstaked entity keeps the op seen for the entity at fault and gives
    a paymaster not at fault its seen op back; nothing is banned."""
    from bundler.pool.mempool import PoolEntry
    from bundler.userop import UserOperation

    rules = clean_bundler.reputation
    op = UserOperation(sender="0x" + "0a" * 20, nonce=0, call_data=b"", call_gas_limit=0, verification_gas_limit=0,
                       pre_verification_gas=0, max_fee_per_gas=0, max_priority_fee_per_gas=0, signature=b"",
                       factory="0x" + "0f" * 20, paymaster="0x" + "0e" * 20)
    entry = PoolEntry(op=op, entry_point=V07, hash="0x01")
    rules.admitted(entry)
    assert rules.bundle_failure(entry, "AA13", second_validation=True) == []
    assert (rules.book.get(V07, op.factory).ops_seen, rules.book.get(V07, op.paymaster).ops_seen) == (1, 0)
    assert rules.book.status(V07, op.factory) is Status.OK
    rules.bundle_failure(entry, "AA13")
    assert rules.book.status(V07, op.factory) is Status.BANNED
    rules.clear()


# ---------------------------------------------------------------- bundle-time failures


@pytest.mark.parametrize("ep", EPS)
async def test_paymaster_failing_at_bundle_time_is_banned(unsafe_rpc, anvil, ep):
    rpc = unsafe_rpc  # safe mode's second validation would catch the failure first (no ban)
    accounts = [make_account(anvil.url, ep) for _ in range(2)]
    paymaster = make_paymaster(anvil.url, ep)
    h1 = await send(rpc, paymaster_op(anvil.url, ep, accounts[0], paymaster), ep)
    h2 = await send(rpc, paymaster_op(anvil.url, ep, accounts[1], paymaster), ep)
    assert (await reputation_of(rpc, ep, paymaster))["opsSeen"] == "0x2"
    drain_deposit(anvil.url, ep, paymaster)  # AA31 at bundle time: the paymaster's fault

    assert await rpc.call("debug_bundler_sendBundleNow") == "ok"
    entry = await reputation_of(rpc, ep, paymaster)
    assert entry == {"address": paymaster_checksum(paymaster), "opsSeen": hex(10_000), "opsIncluded": "0x0",
                     "status": "0x2"}
    errors = []
    for h in (h1, h2):
        with pytest.raises(RpcError) as e:
            await rpc.call("eth_getUserOperationReceipt", h)
        errors.append(e.value)
    # the first op in the bundle failed with AA31; GREP-010: the banned paymaster's other op
    # left the mempool with it
    assert sorted(e.code for e in errors) == [-32508, -32504]
    assert all("AA31" in e.message for e in errors)
    assert await rpc.call("debug_bundler_dumpMempool", ep.address) == []
    account = make_account(anvil.url, ep)
    err = await send_error(rpc, paymaster_op(anvil.url, ep, account, paymaster), ep)
    assert err.code == -32504 and "banned" in err.message


@pytest.mark.parametrize("ep", EPS)
async def test_staked_sender_is_blamed_for_its_paymaster(unsafe_rpc, anvil, ep):
    """EREP-030: a staked account is accountable for its paymaster's failure."""
    rpc = unsafe_rpc  # safe mode's second validation would catch the failure first (no ban)
    account = make_account(anvil.url, ep)
    add_stake(anvil.url, ep, account)
    paymaster = make_paymaster(anvil.url, ep)
    await send(rpc, paymaster_op(anvil.url, ep, account, paymaster), ep)
    drain_deposit(anvil.url, ep, paymaster)
    await rpc.call("debug_bundler_sendBundleNow")
    assert (await reputation_of(rpc, ep, account))["status"] == "0x2"
    assert (await reputation_of(rpc, ep, paymaster))["opsSeen"] == "0x0"  # not at fault: seen op back


@pytest.mark.parametrize("ep", EPS)
async def test_account_failure_gives_the_paymaster_its_seen_op_back(rpc, anvil, clean_bundler, ep):
    """EREP-015: the account fails at bundle time (AA23); the unstaked account
    is not an entity, and the paymaster is not at fault."""
    account = make_account(anvil.url, ep)
    paymaster = make_paymaster(anvil.url, ep)
    await set_reputation(rpc, ep, paymaster, 5, 2)
    h = await send(rpc, paymaster_op(anvil.url, ep, account, paymaster), ep)
    assert (await reputation_of(rpc, ep, paymaster))["opsSeen"] == "0x6"
    node_rpc(anvil.url, "anvil_setCode", [account, "0x60006000fd"])  # validateUserOp reverts now
    mine(anvil.url)
    assert await rpc.call("debug_bundler_sendBundleNow") == "ok"
    with pytest.raises(RpcError) as e:
        await rpc.call("eth_getUserOperationReceipt", h)
    assert "AA23" in e.value.message
    assert await reputation_of(rpc, ep, paymaster) == {
        "address": paymaster_checksum(paymaster), "opsSeen": "0x5", "opsIncluded": "0x2", "status": "0x0"}
    assert await reputation_of(rpc, ep, account) is None


@pytest.mark.parametrize("ep", EPS)
async def test_staked_factory_is_blamed_for_its_account(unsafe_rpc, anvil, ep):
    """EREP-020: the counterfactual account cannot pay at bundle time (AA21); its staked
    factory is accountable."""
    rpc = unsafe_rpc  # safe mode's second validation would catch the failure first (no ban)
    art = ep.artifact("SimpleAccountFactory")
    factory = deploy_bytecode(anvil.url, bytes.fromhex(art["bytecode"][2:]), ("address", ep.address))
    add_stake(anvil.url, ep, factory)
    acct = SimpleAccountHelper.counterfactual(anvil.url, ep, factory)
    node_rpc(anvil.url, "anvil_setBalance", [acct.address, hex(10**18)])
    mine(anvil.url)
    await send(rpc, acct.sign(acct.op(), anvil.chain_id), ep)
    node_rpc(anvil.url, "anvil_setBalance", [acct.address, "0x0"])
    mine(anvil.url)
    await rpc.call("debug_bundler_sendBundleNow")
    entry = await reputation_of(rpc, ep, factory)
    assert entry["status"] == "0x2" and entry["opsSeen"] == hex(10_000)


async def test_unstaked_aggregator_needs_stake():
    """EREP-040 (unreachable through the RPC while aggregators are refused with -32506)."""
    from bundler.config import Config
    from bundler.errors import StakeTooLow
    from bundler.pool.mempool import Mempool
    from bundler.pool.reputation import ReputationRules
    from bundler.sim import PinnedBlock, StakeInfo, ValidationData, ValidationResult
    from bundler.userop import UserOperation

    rules = ReputationRules.from_config(Config(), Mempool())
    op = UserOperation(sender="0x" + "0a" * 20, nonce=0, call_data=b"", call_gas_limit=0, verification_gas_limit=0,
                       pre_verification_gas=0, max_fee_per_gas=0, max_priority_fee_per_gas=0, signature=b"")
    none = StakeInfo(0, 0)

    def result(agg_stake):
        vd = ValidationData.unpack(0)
        return ValidationResult(pre_op_gas=0, prefund=0, account=vd, paymaster=vd, paymaster_context=b"",
                                sender_info=none, factory_info=none, paymaster_info=none,
                                aggregator="0x" + "0c" * 20, aggregator_info=agg_stake, gas_used=0, block_number=1)

    block = PinnedBlock(number=1, timestamp=0, base_fee=0, gas_limit=30_000_000)
    with pytest.raises(StakeTooLow) as e:
        await rules.check_after_validation(op, V07, result(none), block)
    assert "aggregator" in e.value.message
    entities = await rules.check_after_validation(op, V07, result(StakeInfo(10**18, 86_400)), block)
    assert [r.role for r in entities.tracked()] == ["aggregator"]




@pytest.mark.parametrize("ep", EPS)
async def test_failure_found_by_second_validation_drops_without_ban(rpc, anvil, clean_bundler, ep):
    """EREP-030 / GREP-040: an op failing the second validation is dropped; its paymaster is not
    banned (only a failure while building the bundle, after passing it, bans)."""
    paymaster = make_paymaster(anvil.url, ep)
    account = make_account(anvil.url, ep)
    op_hash = await send(rpc, paymaster_op(anvil.url, ep, account, paymaster), ep)
    drain_deposit(anvil.url, ep, paymaster)
    mine(anvil.url)
    await rpc.call("debug_bundler_sendBundleNow")
    with pytest.raises(RpcError) as e:
        await rpc.call("eth_getUserOperationReceipt", op_hash)
    assert "second validation" in e.value.message
    assert (await reputation_of(rpc, ep, paymaster))["status"] != "0x2"


async def test_reputation_survives_a_restart(anvil, tmp_path):
    """A ban is kept in the store: a bundler restarted on the same data dir still refuses."""
    from helpers.inproc import new_key, running_bundler

    paymaster = "0x" + "5a" * 20
    key = new_key(anvil.url)
    async with running_bundler(anvil, data_dir=str(tmp_path), private_key=[key]) as (_b, client):
        await client.call("debug_bundler_setReputation",
                          [{"address": paymaster, "opsSeen": 1000, "opsIncluded": 0}], V07.address)
    async with running_bundler(anvil, data_dir=str(tmp_path), private_key=[key]) as (_b, client):
        entry = await reputation_of(client, V07, paymaster)
        assert entry["status"] == "0x2" and entry["opsSeen"] == hex(1000)
        await client.call("debug_bundler_clearReputation")
    async with running_bundler(anvil, data_dir=str(tmp_path), private_key=[key]) as (_b, client):
        assert await client.call("debug_bundler_dumpReputation", V07.address) == []
