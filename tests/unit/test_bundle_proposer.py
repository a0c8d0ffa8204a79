"""BundleProposer without a node: a fake second validation, a fake bundle check that fails
named ops, fixed fees; the proposal is a ProposedBundle value and its drops reach the pool."""
from __future__ import annotations

from bundler.builder.proposer import BundleProposer, ProposedBundle, bundle_gas_limit
from bundler.chain.clock import InclusionWindow
from bundler.chain.types import PinnedBlock
from bundler.entrypoint import V07, handle_ops_calldata
from bundler.errors import BundlerError, NodeError, OpcodeViolation
from bundler.pool.mempool import PoolEntry
from bundler.sim.results import BundleResult, SimulationFailure
from helpers.stores import make_op

GWEI = 10**9
HEAD = PinnedBlock(number=100, timestamp=1_000, base_fee=GWEI, gas_limit=30_000_000)
BENEFICIARY = "0x" + "be" * 20
EXECUTOR = "0x" + "ec" * 20


def entry(tag: int, nonce: int = 0, fee: int = 3 * GWEI, tip: int = GWEI) -> PoolEntry:
    op = make_op(tag, sender="0x" + f"{tag:040x}", nonce=nonce, max_fee_per_gas=fee, max_priority_fee_per_gas=tip)
    return PoolEntry(op=op, entry_point=V07, hash="0x" + f"{tag:064x}")


class Pool:
    """The pool as the proposer sees it (builder.proposer.ProposalPool): a failure of an op in
    `bans` is blamed on an entity, which takes the ops listed with it."""

    def __init__(self, bans: dict[str, list[PoolEntry]] | None = None) -> None:
        self.drops: list[tuple[str, str, int | None]] = []
        self.bans = bans or {}
        self.blames: list[tuple[str, str | None, bool]] = []
        self.flushes = 0

    def drop(self, entry: PoolEntry, reason: str, code: int | None = None) -> None:
        self.drops.append((entry.hash, reason, code))

    def blamed(self, entry: PoolEntry, code: str | None, second_validation: bool = False) -> list[PoolEntry]:
        self.blames.append((entry.hash, code, second_validation))
        return self.bans.get(entry.hash, [])

    async def flush(self) -> None:
        self.flushes += 1


class Safe:
    """Second validation: the ops named in `errors` fail with that error."""

    def __init__(self, errors: dict[str, BundlerError] | None = None, enabled: bool = True):
        self.errors = errors or {}
        self.enabled = enabled
        self.calls = 0

    async def revalidate(self, simulator, ep, header, entries, *, window):
        self.calls += 1
        return [(e, self.errors.get(e.hash)) for e in entries]


class Check:
    """handleOps check: fails at the first op whose sender is in `bad` (an AA23 with its index)."""

    def __init__(self, bad: set[str]):
        self.bad = bad
        self.rounds: list[int] = []

    async def __call__(self, ops, ep, header, beneficiary, sender) -> BundleResult:
        self.rounds.append(len(ops))
        for i, op in enumerate(ops):
            if op.sender in self.bad:
                return BundleResult(False, 0, failed_op_index=i,
                                    failure=SimulationFailure(reason="AA23 reverted", code="AA23", op_index=i))
        return BundleResult(True, 0)


async def never_mined(_entry: PoolEntry) -> bool:
    return False


def proposer(safe: Safe, check: Check, pool: Pool, fees=(10 * GWEI, 2 * GWEI)) -> BundleProposer:
    async def suggest(_header):
        return fees
    return BundleProposer(simulator=None, safe=safe, window=lambda _h: InclusionWindow(1_001, 1_013, 101),
                          check=check, fees=suggest, pool=pool, found_mined=never_mined)


async def test_ops_failing_the_second_validation_or_the_simulation_are_dropped_and_the_rest_priced():
    a, b, c, d = entry(1), entry(2), entry(3, tip=GWEI // 2), entry(4)
    pool, check = Pool(), Check(bad={b.op.sender})
    safe = Safe({d.hash: OpcodeViolation("AA24 signature error")})
    released: list[list[str]] = []

    async def release(entries):
        released.append([e.hash for e in entries])
    out = await proposer(safe, check, pool).propose(V07, HEAD, [a, b, c, d], beneficiary=BENEFICIARY,
                                                   sender=EXECUTOR, release=release)
    assert isinstance(out, ProposedBundle)
    assert out.ops == [a, c]
    assert out.drops == {d.hash: "failed second validation: AA24 signature error",
                         b.hash: "failed in bundle simulation: AA23 reverted"}
    assert [(h, code) for h, _r, code in pool.drops] == [(d.hash, -32502), (b.hash, -32500)]
    assert check.rounds == [3, 2]  # simulated again without the op that failed
    # fees: never more than the ops pay (tip of c), never below the base fee
    assert (out.max_fee, out.priority) == (3 * GWEI, GWEI // 2)
    assert out.calldata == handle_ops_calldata([a.op, c.op], BENEFICIARY)
    assert out.gas_limit == bundle_gas_limit([a.op, c.op], len(out.calldata), 0, HEAD)
    assert released == [[]]  # nothing held


async def test_an_op_the_node_could_not_validate_is_left_out_but_kept_and_released():
    a, b = entry(1), entry(2)
    pool = Pool()
    released: list[PoolEntry] = []

    async def release(entries):
        released.extend(entries)
    out = await proposer(Safe({b.hash: NodeError("node timeout")}), Check(set()), pool).propose(
        V07, HEAD, [a, b], beneficiary=BENEFICIARY, sender=EXECUTOR, release=release)
    assert out is not None and out.ops == [a] and out.drops == {}
    assert pool.drops == [] and released == [b]


async def test_nothing_left_is_no_bundle_and_unsafe_mode_skips_the_second_validation():
    a = entry(1)
    safe, pool = Safe(enabled=False), Pool()
    assert await proposer(safe, Check({a.op.sender}), pool).propose(
        V07, HEAD, [a], beneficiary=BENEFICIARY, sender=EXECUTOR) is None
    assert safe.calls == 0 and [h for h, _r, _c in pool.drops] == [a.hash]


async def test_a_failure_blamed_on_an_entity_drops_its_other_ops_in_the_bundle_and_flushes_once():
    """The bundle simulation fails b (AA23); the pool blames its entity, banned now, which b
    shares with c: c leaves the bundle too, dropped as throttled; a and d are bundled."""
    a, b, c, d = entry(1), entry(2), entry(3), entry(4)
    outside = entry(5)  # another op of the banned entity, not in this bundle: dropped all the same
    pool, check = Pool(bans={b.hash: [c, outside]}), Check(bad={b.op.sender})
    out = await proposer(Safe(), check, pool).propose(V07, HEAD, [a, b, c, d], beneficiary=BENEFICIARY,
                                                      sender=EXECUTOR)
    assert out is not None and out.ops == [a, d]
    assert pool.blames == [(b.hash, "AA23", False)]
    assert [(h, code) for h, _r, code in pool.drops] == [(b.hash, -32500), (c.hash, -32504), (outside.hash, -32504)]
    assert out.drops[c.hash].startswith("an entity it uses was banned: failed in bundle simulation")
    assert outside.hash not in out.drops  # not part of this proposal
    assert check.rounds == [4, 2]
    assert pool.flushes == 1


async def test_a_second_validation_failure_is_blamed_as_such():
    a, b = entry(1), entry(2)
    pool = Pool(bans={b.hash: [a]})
    out = await proposer(Safe({b.hash: OpcodeViolation("AA24 signature error")}), Check(set()), pool).propose(
        V07, HEAD, [a, b], beneficiary=BENEFICIARY, sender=EXECUTOR)
    assert out is None  # b failed, a shares its banned entity
    assert pool.blames == [(b.hash, "AA24", True)]
    assert [h for h, _r, _c in pool.drops] == [b.hash, a.hash]
