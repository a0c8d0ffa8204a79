"""Safe mode: the ERC-7562 rules at admission and at bundle time, between the mempool and the
simulation's tracer/rules (bundler.sim.erc7562).

    safe = SafeMode(config, mempool)                 # None-like when config.unsafe
    tracer = safe.tracer(op, ep)                     # pass to simulator.validate(..., tracer=)
    safe.enforce(op, ep, result)                     # raises the first violation (-32502/-32505)
    entry.validation = safe.kept(op, result)         # what later checks read of it (CheckedTrace)
    entry.code_hashes = safe.code_hashes(result)     # kept for the second validation (COD-010)
    results = await safe.revalidate(simulator, ep, block, entries)   # builder, before sending

The mempool context (STO-040/041) is the senders and entities of the *other* ops in the pool
(ops of the same sender do not count against each other).
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Iterator, Mapping, Sequence

from eth_utils import to_checksum_address

from ..chain.clock import InclusionWindow
from ..chain.types import PinnedBlock
from ..config import Config
from ..metrics import Metrics, NullMetrics
from ..entrypoint import EntryPointVersion
from ..errors import BundlerError, NodeError, OpcodeViolation, TimeRangeInvalid
from ..sim.erc7562 import CheckedTrace, RuleContext, TracerFactory, check, checked, storage_touched, violation_error
from ..sim.ep_storage import queued_nonce_override
from ..sim.results import SimulationFailure, ValidationResult, failure_error, kept_form, validation_error
from ..userop.model import UserOperation
from .mempool import PoolEntry, PoolReader


log = logging.getLogger(__name__)

class NotDueYet(TimeRangeInvalid):
    """The second validation found a v0.9 block range that starts after the next block, for an
    op whose entry did not know it (taken in from a shared store, where ranges are not kept):
    the op is held, not dropped; its entry knows the range from now on."""


class SafeMode:
    def __init__(self, config: Config, mempool: PoolReader, metrics: Metrics | NullMetrics | None = None):
        self.enabled = not getattr(config, "unsafe", False)
        self.reuse_reads = getattr(config, "readset_reuse", True)
        self.metrics = metrics
        self.min_stake = getattr(config, "min_stake_value", 10**18)
        self.min_unstake_delay = getattr(config, "min_unstake_delay", 86_400)
        self.mempool = mempool
        # second validations by how they were decided: same_block (admission's block), reused
        # (sim/readset.py: every value admission read is unchanged), simulated
        self.second_validations: collections.Counter[str] = collections.Counter()

    # -- admission --
    def tracer(self, op: UserOperation, ep: EntryPointVersion) -> TracerFactory | None:
        return TracerFactory.for_op(op, ep.address) if self.enabled else None

    def context(self, op: UserOperation, ep: EntryPointVersion, result: ValidationResult) -> RuleContext:
        """The rules' context, with the mempool's part (STO-040/041) reduced to what the rules
        will ask: which of this op's entities and touched contracts are senders of other pending
        ops, and whether its sender is an entity of another sender's op (indexed lookups each,
        no pass over the pool: admission costs the same however full the pool is)."""
        sender = op.sender.lower()
        candidates = {a.lower() for a in (op.factory if op.deploys_account else None, op.paymaster) if a}
        trace = getattr(result, "trace", None)
        if isinstance(trace, CheckedTrace):
            candidates.update(trace.others_storage)
        elif trace is not None:
            for phase in trace.phases.values():
                candidates.update("0x" + a.hex() for a in phase.storage)
                candidates.update("0x" + a.hex() for a in phase.transient)
        candidates.discard(sender)
        senders = {a for a in candidates if self._pending_sender(a)}
        # the rules ask only whether this op's sender is another sender's factory or paymaster
        entities: set[str] = set()
        if any(e.op.sender.lower() != sender for e in self.mempool.entity_users(sender)):
            entities.add(sender)
        return RuleContext.for_op(
            op, ep.address, result, min_stake=self.min_stake, min_unstake_delay=self.min_unstake_delay,
            mempool_senders=senders, mempool_entities=entities,
        )

    def _pending_sender(self, address: str) -> bool:
        return bool(self.mempool.for_sender(address))  # addresses are lower-case (userop.codec)

    def violation(self, op: UserOperation, ep: EntryPointVersion, result: ValidationResult) -> BundlerError | None:
        """The error for the first rule the validation broke, or None."""
        if not self.enabled or result.trace is None:
            return None
        ctx = self.context(op, ep, result)
        found = check(result.trace, ctx)
        return violation_error(found[0], ctx) if found else None

    def enforce(self, op: UserOperation, ep: EntryPointVersion, result: ValidationResult) -> None:
        err = self.violation(op, ep, result)
        if err is not None:
            raise err

    def others_storage(self, entry: PoolEntry) -> frozenset[str]:
        """Contracts other than its own sender whose storage the op's last validation touched
        (STO-041: the builder keeps it out of a bundle with an op of any of those senders)."""
        trace = getattr(entry.validation, "trace", None)
        if not self.enabled or trace is None:
            return frozenset()
        return storage_touched(trace) - {entry.op.sender.lower()}

    @staticmethod
    def kept(op: UserOperation, result) -> ValidationResult | None:
        """What a pool entry keeps of a validation the rules passed (None without a trace): the
        result with its trace reduced to what the second validation and STO-041 read."""
        trace = getattr(result, "trace", None)
        if trace is None:
            return None
        return result if isinstance(trace, CheckedTrace) else kept_form(result, checked(trace, op.sender))

    @staticmethod
    def code_hashes(result) -> bytes | None:
        """The code hashes a traced validation saw (None for a kept result: its code is the one
        the entry's hashes were taken from)."""
        trace = getattr(result, "trace", None)
        if trace is None or isinstance(trace, CheckedTrace):
            return None
        return pack_code_hashes(trace.code_hashes)

    # -- second validation (builder) --
    async def revalidate(self, simulator, ep: EntryPointVersion, block: PinnedBlock, entries: Sequence[PoolEntry],
                         window: InclusionWindow | None = None) -> list[tuple[PoolEntry, BundlerError | None]]:
        """Validate each entry again, in parallel, with the rules on and the code hashes compared
        with admission's (COD-010). An op following another op of the same sender in `entries`
        is validated as if that one were mined (nonce override), as at admission. Its other
        effects (a session granted by the earlier op, counters it moved) are not applied, so a
        failure of such a follow-up op is not conclusive: it stays in the bundle, whose
        simulation runs the ops in order and decides. `window` (chain.clock.InclusionWindow) is
        when the bundle will be included; without it, the next second after the block."""
        if window is None:
            next_ts = max(int(time.time()), block.timestamp + 1)
            window = InclusionWindow(next_ts, next_ts, next_block=block.number + 1)
        seen: dict[tuple[str, int], set[int]] = {}
        senders: set[str] = set()
        plans = []
        for entry in entries:
            op = entry.op
            key = (op.sender.lower(), op.nonce_key)
            earlier = seen.setdefault(key, set())
            overrides = None
            if op.nonce - 1 in earlier and op.nonce_sequence > 0:
                overrides = queued_nonce_override(ep, op)
            earlier.add(op.nonce)
            follows = op.sender.lower() in senders
            senders.add(op.sender.lower())
            plans.append((entry, overrides, follows))
        reuse = await self._unchanged_reads(simulator, block, [(e, o) for e, o, _ in plans])
        jobs = [self._revalidate_one(simulator, ep, block, entry, overrides, window, follows, entry.hash in reuse)
                for entry, overrides, follows in plans]
        return list(zip(entries, await asyncio.gather(*jobs)))

    def _count(self, how: str) -> None:
        self.second_validations[how] += 1
        if self.metrics is not None:
            self.metrics.second_validations.labels(how).inc()

    async def _unchanged_reads(self, simulator, block, plans) -> set[str]:
        """Hashes of the entries whose admission validation read nothing that changed since (its
        read set re-read at `block` in one batch): simulating them again would give the same
        result and trace. Not for an entry simulated with a nonce override now (the state it
        reads is not the node's) or one that read the block context."""
        candidates = [
            entry for entry, overrides in plans
            if overrides is None and entry.validation is not None and entry.validated_block != block.hash
            and getattr(entry.validation, "reads", None) is not None and entry.validation.reads.reusable
        ]
        if not candidates or not block.hash or not self.reuse_reads:
            return set()
        try:
            same = await simulator.reads_unchanged(block, [e.validation.reads for e in candidates])
        except Exception as e:  # node or worker trouble: simulate them all again instead
            log.debug("read sets could not be checked: %s: %s", type(e).__name__, e)
            return set()
        return {entry.hash for entry, ok in zip(candidates, same) if ok}

    async def _revalidate_one(self, simulator, ep, block, entry: PoolEntry, overrides, window,
                              follows_earlier_op: bool = False, reads_unchanged: bool = False) -> BundlerError | None:
        error = await self._check_again(simulator, ep, block, entry, overrides, window, reads_unchanged)
        if error is not None and follows_earlier_op and not isinstance(error, (NodeError, NotDueYet)):
            log.debug("second validation of %s inconclusive (follows an op of its sender): %s",
                      entry.hash, error.message)
            return None
        return error

    async def _check_again(self, simulator, ep, block, entry: PoolEntry, overrides, window,
                           reads_unchanged: bool = False) -> BundlerError | None:
        op = entry.op
        timing = dict(now=window.earliest, latest=window.latest, strict=ep.valid_after_strict, min_valid_for=0,
                      next_block=window.next_block, block_time=window.block_time)
        if entry.validation is not None and block.hash and entry.validated_block == block.hash:
            # same block, same state, same code: simulating again would trace the same; only the
            # mempool may have changed, so the rules are applied again to the trace we have
            self._count("same_block")
            err = validation_error(entry.validation, paymaster=op.paymaster, **timing)
            return err if err is not None else self.violation(op, ep, entry.validation)
        if reads_unchanged:
            # every value admission's validation read is the same at this block and it read no
            # block context: a new simulation would trace the same (sim/readset.py)
            self._count("reused")
            out = entry.validation
        else:
            self._count("simulated")
            try:
                out = await simulator.simulate_validation(op, ep, block, overrides=overrides, tracer=self.tracer(op, ep))
            except BundlerError as e:  # node trouble: not the op's fault
                return e if isinstance(e, NodeError) else NodeError(e.message)
            except Exception as e:  # a broken worker, ...: retried next round
                return NodeError(f"second validation could not run: {type(e).__name__}: {e}")
        if isinstance(out, SimulationFailure):
            return failure_error(out, op.paymaster)
        entry.valid_after_block, entry.valid_until_block = out.valid_after_block, out.valid_until_block
        if not window.block_due(out.valid_after_block):
            return NotDueYet(f"UserOperation is held: its block range starts after block {out.valid_after_block}, "
                             f"and the next block is {window.next_block}")
        # the validity window is the builder's business (it keeps not-yet-valid ops pending)
        err = validation_error(out, paymaster=op.paymaster, **timing)
        if err is not None:
            return err
        err = self.violation(op, ep, out)
        if err is not None:
            return err
        changed = code_hash_change(entry.code_hashes, self.code_hashes(out))
        if changed is None:
            entry.validation, entry.validated_block = self.kept(op, out), block.hash
        return changed


def pack_code_hashes(hashes: Mapping[str, str]) -> bytes:
    """COD-010's reference, per contract whose code a validation ran or inspected, from
    {"0x<address>": "0x<code hash>"} (the tracer's report): its 20-byte address and 32-byte code
    hash, all in one plain bytes object (a dict of hex strings was about 800 bytes per pending
    op; a bytes subclass adds a 16-byte GC header)."""
    return b"".join(bytes.fromhex(a[2:]) + bytes.fromhex(h[2:]) for a, h in hashes.items())


_CODE_HASH_ROW = 52


def code_hash_items(packed: bytes) -> Iterator[tuple[str, str]]:
    """(address, code hash) per contract of pack_code_hashes' form, as "0x..." hex."""
    for i in range(0, len(packed), _CODE_HASH_ROW):
        yield "0x" + packed[i:i + 20].hex(), "0x" + packed[i + 20:i + _CODE_HASH_ROW].hex()


def _code_hash_pairs(hashes: Mapping[str, str] | bytes) -> Iterator[tuple[str, str]]:
    return code_hash_items(hashes) if isinstance(hashes, (bytes, bytearray)) else iter(hashes.items())


def code_hash_change(before: Mapping[str, str] | bytes | None,
                     after: Mapping[str, str] | bytes | None) -> BundlerError | None:
    """COD-010: a contract whose code the first validation ran or inspected has other code now."""
    if not before or not after:
        return None
    after = dict(_code_hash_pairs(after))
    for address, old in _code_hash_pairs(before):
        new = after.get(address)
        if new is not None and new != old:
            return OpcodeViolation(
                f"the code of {to_checksum_address(address)} changed since the UserOperation was "
                f"admitted (ERC-7562 COD-010: validation must see the same code at bundle time)",
                {"rule": "COD-010", "address": address, "codeHash": old, "newCodeHash": new},
            )
    return None
