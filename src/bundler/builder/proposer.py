"""Proposing a bundle: which pending ops go in, validated again and simulated together, with
its gas and fees, as a value (ProposedBundle) for the builder to send.

select_ops is a pure function of the candidates (best paying first), the ops already in other
bundles, the inclusion window and the head block: no node, no store, no clock of its own. The
ops it finds expired or banned come back as drops for the caller to apply through the pool.
BundleProposer then runs the second validation (one call, SafeMode.revalidate), simulates
handleOps and drops the ops that fail, and prices the transaction; it tells the pool
(pool.pool.Pool: drop, blamed) as it finds them (a staked entity's ban reaches other ops of
the same bundle).
It sends nothing and claims nothing: the ops it leaves out but keeps pending are reported
(`release`) for the builder to hand back in a shared store.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Iterable, Protocol, Sequence

from ..chain.clock import InclusionWindow
from ..chain.types import PinnedBlock
from ..entrypoint import EntryPointVersion, handle_ops_calldata
from ..errors import BundlerError, EntityThrottled, InvalidParams, NodeError
from ..pool.eip7702 import GAS_PER_AUTHORIZATION
from ..pool.mempool import PoolEntry
from ..pool.reputation import Verdict, failure_code
from ..pool.safe import NotDueYet
from ..sim.protocol import RawValidator
from ..sim.results import BundleResult, SimulationFailure, failure_error
from ..userop.model import UserOperation

log = logging.getLogger(__name__)

# EntryPoint work per bundle outside the ops' own limits (loop, beneficiary payment)
BUNDLE_OVERHEAD_GAS = 60_000


class Gate(Protocol):
    """The reputation rules' say on one op for this bundle (pool.reputation.BundleGate)."""

    def check(self, entry: PoolEntry) -> tuple[Verdict, str | None]: ...


@dataclass
class Selection:
    ops: list[PoolEntry] = field(default_factory=list)
    # (entry, reason, error code) of ops that must leave the pool (expired, banned entity)
    drops: list[tuple[PoolEntry, str, int]] = field(default_factory=list)


def due(entry: PoolEntry, window: InclusionWindow) -> bool:
    """Valid in the next block: its validAfter, and a v0.9 block range's start, are behind it.
    Ops not due are held in the pool, not bundled."""
    return (window.due(entry.valid_after, entry.entry_point.valid_after_strict)
            and window.block_due(entry.valid_after_block))


def select_ops(candidates: Iterable[PoolEntry], *, reserved: Iterable[PoolEntry], submitted: Iterable[PoolEntry],
               window: InclusionWindow, header: PinnedBlock, max_gas: int, max_ops: int, gate: Gate | None = None,
               others_storage: Callable[[PoolEntry], frozenset[str]] = lambda _e: frozenset()) -> Selection:
    """The ops of one bundle. `reserved`: ops taken by other bundles being built or followed
    (their senders and paymasters wait for those to settle: a later nonce would fail before the
    earlier one is mined, a shared deposit could run out); `submitted`: ops in sent transactions
    (their senders wait)."""
    out = Selection()
    gas = BUNDLE_OVERHEAD_GAS
    limit = min(max_gas, header.gas_limit)
    taken = list(reserved)
    reserved_hashes = {e.hash for e in taken}
    busy = {e.op.sender for e in taken} | {e.op.sender for e in submitted}
    busy_paymasters = {e.op.paymaster for e in taken if e.op.paymaster}
    authorized: set[str] = set()  # senders with an EIP-7702 authorization in this bundle
    # STO-041: no op in the bundle touches the storage of another op's sender in it; the
    # later one (by fee order) waits for the next bundle instead of being refused
    senders: set[str] = set()
    touched: set[str] = set()
    for entry in candidates:
        op = entry.op
        if entry.hash in reserved_hashes or op.sender in busy or (op.paymaster and op.paymaster in busy_paymasters):
            continue
        # judged at the time the bundle will be included, not at the head block (chain.clock)
        if entry.valid_until and entry.valid_until < window.latest:
            out.drops.append((entry, f"expired: validUntil {entry.valid_until} is before the bundle's expected "
                                     f"inclusion (by timestamp {window.latest})", -32503))
            continue
        if entry.valid_until_block < window.last_block:
            out.drops.append((entry, f"expired: its block range ends at block {entry.valid_until_block}, before "
                                     f"the bundle's expected inclusion (by block {window.last_block})", -32503))
            continue
        if not due(entry, window):
            busy.add(op.sender)  # held until due, and the sender's later nonces with it
            continue
        if op.max_fee_per_gas < header.base_fee:
            continue  # cannot pay the current base fee; stays pending
        if gas + op.total_gas_limit() > limit:
            continue
        if op.eip7702_auth is not None and op.sender in authorized:
            continue  # one authorization per sender and bundle; the next one waits
        storage = others_storage(entry)
        if op.sender in touched or storage & senders:
            continue  # STO-041: stays pending for a later bundle
        if gate is not None:
            verdict, reason = gate.check(entry)
            if verdict == Verdict.DROP:
                out.drops.append((entry, reason or "dropped by the reputation rules", EntityThrottled.code))
                continue
            if verdict == Verdict.SKIP:
                continue
        if op.eip7702_auth is not None:
            authorized.add(op.sender)
        senders.add(op.sender)
        touched.update(storage)
        out.ops.append(entry)
        gas += op.total_gas_limit()
        if len(out.ops) >= max_ops:
            break
    return out


def bundle_gas_limit(ops: Iterable[UserOperation], calldata_len: int, n_authorizations: int,
                     header: PinnedBlock) -> int:
    """Gas of a bundle transaction: every op's limits, the EntryPoint's own work, calldata."""
    return min(
        header.gas_limit,
        BUNDLE_OVERHEAD_GAS + sum(op.total_gas_limit() for op in ops) + 16 * calldata_len
        + GAS_PER_AUTHORIZATION * n_authorizations,
    )


@dataclass
class ProposedBundle:
    """One bundle ready to sign: its ops (in order), calldata, gas and fees, and what the
    proposal dropped (op hash -> reason, already applied to the pool)."""

    entry_point: EntryPointVersion
    ops: list[PoolEntry]
    beneficiary: str
    calldata: bytes
    gas_limit: int
    max_fee: int
    priority: int
    authorizations: list[dict] = field(default_factory=list)
    drops: dict[str, str] = field(default_factory=dict)


Release = Callable[[list[PoolEntry]], Awaitable[None]]


async def _keep(_entries: list[PoolEntry]) -> None:
    """No shared store: nothing to give back."""


class BundleChecker(Protocol):
    """handleOps of these ops as it would run in the next block (bundle_check.check_bundle)."""

    async def __call__(self, ops: list[UserOperation], ep: EntryPointVersion, header: PinnedBlock,
                       beneficiary: str, sender: str) -> BundleResult: ...


class ProposalPool(Protocol):
    """What the proposer tells the pool (pool.pool.Pool): ops dropped, failures blamed on
    entities (the ops of an entity banned for it come back to be dropped too), writes flushed."""

    def drop(self, entry: PoolEntry, reason: str, code: int | None = None) -> None: ...

    def blamed(self, entry: PoolEntry, code: str | None, second_validation: bool = False) -> list[PoolEntry]: ...

    async def flush(self) -> None: ...


class SecondValidation(Protocol):
    """pool.safe.SafeMode before a bundle: each op validated again with the ERC-7562 rules on."""

    enabled: bool

    async def revalidate(self, simulator: RawValidator, ep: EntryPointVersion, block: PinnedBlock,
                         entries: Sequence[PoolEntry], window: InclusionWindow | None = None
                         ) -> list[tuple[PoolEntry, BundlerError | None]]: ...


class BundleAuthorizations(Protocol):
    """pool.eip7702.Eip7702Checker: the bundle's authorizationList, and the ops whose tuple went stale."""

    async def bundle_authorizations(self, entries: list[PoolEntry], block_tag: str
                                    ) -> tuple[dict[str, dict], dict[str, str]]: ...


class BundleProposer:
    def __init__(self, *, simulator: RawValidator, safe: SecondValidation,
                 window: Callable[[PinnedBlock], InclusionWindow],
                 check: BundleChecker, fees: Callable[[PinnedBlock], Awaitable[tuple[int, int]]], pool: ProposalPool,
                 found_mined: Callable[[PoolEntry], Awaitable[bool]], eip7702: BundleAuthorizations | None = None):
        self.simulator = simulator   # sim.simulator.Simulator (simulate_validation)
        self.safe = safe             # pool.safe.SafeMode: the second validation
        self.window = window         # inclusion window of the block after a header
        self.check = check
        self.fees = fees             # (maxFee, tip) the node suggests for the next block
        self.pool = pool
        self.found_mined = found_mined  # an op refused for its nonce found mined (recorded so)
        self.eip7702 = eip7702       # pool.eip7702.Eip7702Checker, or None

    async def propose(self, ep: EntryPointVersion, header: PinnedBlock, selected: list[PoolEntry], *,
                      beneficiary: str, sender: str, release: Release = _keep) -> ProposedBundle | None:
        """The bundle of `selected` (claimed by this instance) that passes the second validation
        and the bundle simulation, priced; None when no op is left. `release` gets the ops left
        out but kept pending (held, node trouble), as they are found."""
        dropped: dict[str, str] = {}
        claimed = selected
        selected = await self.second_validation(ep, header, selected, dropped)
        # kept pending but not in this bundle (held, node trouble): another instance may take them
        kept = {id(e) for e in selected}
        await release([e for e in claimed if id(e) not in kept and e.hash not in dropped
                       and e.submitted_in is None])
        selected, authorizations = await self.simulate_and_drop(ep, header, selected, dropped,
                                                                beneficiary=beneficiary, sender=sender,
                                                                release=release)
        if dropped:
            await self.pool.flush()
        if not selected:
            return None
        auth_list = [authorizations[e.hash] for e in selected if e.hash in authorizations]
        data = handle_ops_calldata([e.op for e in selected], beneficiary)
        gas_limit = bundle_gas_limit([e.op for e in selected], len(data), len(auth_list), header)
        max_fee, priority = await self.fees(header)
        # the bundle must not pay more per gas than its ops pay the beneficiary
        priority = min(priority, min(e.op.max_priority_fee_per_gas for e in selected))
        max_fee = max(min(max_fee, min(e.op.max_fee_per_gas for e in selected)), header.base_fee)
        priority = min(priority, max_fee)
        return ProposedBundle(ep, selected, beneficiary, data, gas_limit, max_fee, priority, auth_list, dropped)

    def _drop(self, entry: PoolEntry, reason: str, code: int | None, dropped: dict[str, str]) -> None:
        dropped[entry.hash] = reason
        self.pool.drop(entry, reason, code)

    async def second_validation(self, ep: EntryPointVersion, header: PinnedBlock, selected: list[PoolEntry],
                                dropped: dict[str, str]) -> list[PoolEntry]:
        """ERC-7562 second validation (safe mode): each op validated again with the rules on and
        its code hashes compared with admission's; what fails is dropped with its reason."""
        if not self.safe.enabled or not selected:
            return selected
        keep = []
        held: dict[str, int] = {}  # sender -> its first op not due yet: later nonces wait with it
        for entry, error in await self.safe.revalidate(self.simulator, ep, header, selected,
                                                       window=self.window(header)):
            if entry.hash in dropped:
                continue  # dropped meanwhile: an entity it uses was banned by an earlier failure
            if error is None:
                keep.append(entry)
            elif isinstance(error, NotDueYet):
                log.info("op %s held: %s", entry.hash, error.message)
                held[entry.op.sender] = min(entry.op.nonce, held.get(entry.op.sender, entry.op.nonce))
            elif isinstance(error, NodeError):
                log.warning("second validation of %s failed on the node: %s", entry.hash, error.message)
            elif "AA25" in error.message and await self.found_mined(entry):
                continue  # its nonce is used because it is mined already (e.g. after a reorg)
            else:
                reason = f"failed second validation: {error.message}"
                self._drop(entry, reason, error.code, dropped)
                # only a staked entity at fault is banned for it (SREP-050, EREP-020/030)
                code = failure_code(error.message, error.data)
                for other in self.pool.blamed(entry, code, second_validation=True):
                    why = f"an entity it uses was banned: {reason}"
                    keep = [e for e in keep if e is not other]
                    if any(other is e for e in selected):
                        dropped[other.hash] = why
                    self.pool.drop(other, why, EntityThrottled.code)
        return [e for e in keep if e.op.nonce < held.get(e.op.sender, e.op.nonce + 1)]

    async def simulate_and_drop(self, ep: EntryPointVersion, header: PinnedBlock, selected: list[PoolEntry],
                                dropped: dict[str, str], *, beneficiary: str, sender: str,
                                release: Release = _keep) -> tuple[list[PoolEntry], dict[str, dict]]:
        """handleOps simulated until it passes, each round without the op that failed (dropped,
        or held when its block range has not started); the EIP-7702 authorizations of the rest."""
        selected = list(selected)
        authorizations: dict[str, dict] = {}
        if self.eip7702 is not None and any(e.op.eip7702_auth for e in selected):
            authorizations, stale = await self.eip7702.bundle_authorizations(selected, header.tag)
            for e in [e for e in selected if e.hash in stale]:
                selected.remove(e)
                self._drop(e, stale[e.hash], InvalidParams.code, dropped)
        while selected:
            outcome = await self.check([e.op for e in selected], ep, header, beneficiary, sender)
            if outcome.success:
                break
            if outcome.failed_op_index is None or outcome.failure is None:
                log.warning("bundle simulation failed outside any op: %s", outcome.failure)
                before = selected
                selected = await self._isolate(ep, selected, header, beneficiary, sender, dropped)
                await release([e for e in before if e not in selected and e.submitted_in is None])
                continue
            bad = selected.pop(outcome.failed_op_index)
            error = failure_error(outcome.failure, bad.op.paymaster)
            reason = f"failed in bundle simulation: {outcome.failure.message}"
            if "AA25" in outcome.failure.message and await self.found_mined(bad):
                continue  # its nonce is used because it is mined already (e.g. after a reorg)
            if outcome.failure.code in ("AA27", "AA37") and await self._block_range_not_started(ep, header, bad):
                # held, and its sender's later nonces with it (they would fail AA25 without it)
                later = [e for e in selected if e.op.sender == bad.op.sender and e.op.nonce > bad.op.nonce]
                selected = [e for e in selected if not any(e is o for o in later)]
                await release([bad, *later])
                continue
            self._drop(bad, reason, error.code, dropped)
            for other in self.pool.blamed(bad, outcome.failure.code):
                why = f"an entity it uses was banned: {reason}"
                if any(other is e for e in selected):
                    selected = [e for e in selected if e is not other]
                    dropped[other.hash] = why
                self.pool.drop(other, why, EntityThrottled.code)
        return selected, authorizations

    async def _isolate(self, ep: EntryPointVersion, selected: list[PoolEntry], header: PinnedBlock,
                       beneficiary: str, sender: str, dropped: dict[str, str]) -> list[PoolEntry]:
        """The bundle failed without naming an op: try each op alone, drop those that fail
        alone; if all pass alone, their combination fails, so keep only the first for now."""
        outcomes = await asyncio.gather(*(
            self.check([e.op], ep, header, beneficiary, sender) for e in selected
        ))
        keep = []
        for entry, alone in zip(selected, outcomes):
            if alone.success:
                keep.append(entry)
                continue
            message = alone.failure.message if alone.failure else "handleOps reverted"
            code = failure_error(alone.failure, entry.op.paymaster).code if alone.failure else None
            self._drop(entry, f"failed in bundle simulation: {message}", code, dropped)
        return keep if len(keep) < len(selected) else keep[:1]

    async def _block_range_not_started(self, ep: EntryPointVersion, header: PinnedBlock, entry: PoolEntry) -> bool:
        """The bundle check refused an op for its v0.9 block range (AA27 / AA37) although the
        selection let it through: its entry did not know the range (an op another instance
        admitted, taken in from the shared store, which keeps no ranges; without safe mode no
        second validation learnt it). Learn it now; True when it has not started (hold the op)."""
        if entry.valid_after_block:
            return False  # known and judged due by the selection: the range has ended
        try:
            out = await self.simulator.simulate_validation(entry.op, ep, header)
        except Exception as e:  # cannot tell: dropped as the check says
            log.warning("could not validate %s again: %s", entry.hash, e)
            return False
        if isinstance(out, SimulationFailure):
            return False
        entry.valid_after_block, entry.valid_until_block = out.valid_after_block, out.valid_until_block
        held = not self.window(header).block_due(out.valid_after_block)
        if held:
            log.info("op %s held: its block range starts after block %d", entry.hash, out.valid_after_block)
        return held
