"""ERC-7562 reputation: opsSeen / opsIncluded per entity and EntryPoint, the ok / throttled /
banned status computed from them, and the mempool and bundle rules that use the status.

Two layers:
- ReputationBook: the counters only (seen, included, penalty, decay, set / dump / clear for
  the debug API). Decay runs on a clock the caller may replace (tests use a fake one).
- ReputationRules: what admission and the builder ask: may this op enter the mempool
  (GREP-010, GREP-020, UREP-020, EREP-010), count what was seen and included, blame the entity
  behind a bundle-time failure (GREP-040, EREP-015/020/030), and which pending ops may go into
  the next bundle (GREP-010, GREP-020).

Entities of an op: its factory (when it deploys the account), paymaster and aggregator, and
its sender when the sender is staked (an unstaked sender is limited by the per-sender mempool
count instead, UREP-010). docs/reputation.md lists the parameters and the choices made where
the ERC leaves room.
"""
from __future__ import annotations

import enum
import logging
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable

from eth_abi import decode, encode
from eth_hash.auto import keccak
from eth_utils import to_checksum_address

from ..entrypoint import EntryPointVersion
from ..errors import EntityThrottled, PaymasterDepositTooLow, StakeTooLow
from ..userop.model import UserOperation
from .mempool import Mempool, PoolEntry
from .staking import StakePolicy

if TYPE_CHECKING:
    from ..chain.client import NodeClient
    from ..chain.types import PinnedBlock
    from ..config import Config
    from ..sim.results import ValidationResult
    from ..store.base import Store
    from .session_gate import FastValidation

log = logging.getLogger(__name__)

SENDER, FACTORY, PAYMASTER, AGGREGATOR = "sender", "factory", "paymaster", "aggregator"
SEL_BALANCE_OF = keccak(b"balanceOf(address)")[:4]
# failures that a race explains (the op or the account landed meanwhile): nobody is blamed
RACE_CODES = frozenset({"AA10", "AA25"})


class Status(str, enum.Enum):
    OK = "ok"
    THROTTLED = "throttled"
    BANNED = "banned"


@dataclass(frozen=True, slots=True)
class ReputationParams:
    """ERC-7562's constants; every one is a setting (config.py, docs/reputation.md)."""

    min_inclusion_denominator: int = 10
    throttling_slack: int = 10
    ban_slack: int = 50
    ban_ops_seen_penalty: int = 10_000
    decay_interval_s: float = 3600.0
    throttled_entity_mempool_count: int = 4
    throttled_entity_bundle_count: int = 4
    throttled_entity_live_blocks: int = 10
    same_unstaked_entity_mempool_count: int = 10
    max_ops_allowed_unstaked_entity: int = 10_000

    @classmethod
    def from_config(cls, config: Config) -> "ReputationParams":
        return cls(
            min_inclusion_denominator=config.reputation_min_inclusion_denominator,
            throttling_slack=config.reputation_throttling_slack,
            ban_slack=config.reputation_ban_slack,
            ban_ops_seen_penalty=config.reputation_ban_ops_seen_penalty,
            decay_interval_s=config.reputation_decay_interval_s,
            throttled_entity_mempool_count=config.throttled_entity_mempool_count,
            throttled_entity_bundle_count=config.throttled_entity_bundle_count,
            throttled_entity_live_blocks=config.throttled_entity_live_blocks,
            same_unstaked_entity_mempool_count=config.same_unstaked_entity_mempool_count,
            max_ops_allowed_unstaked_entity=config.max_ops_allowed_unstaked_entity,
        )


@dataclass(slots=True)
class Entry:
    ops_seen: int = 0
    ops_included: int = 0


class ReputationBook:
    """opsSeen / opsIncluded per (EntryPoint, address). Addresses are lower-case hex."""

    def __init__(self, params: ReputationParams, clock: Callable[[], float] = time.time):
        self.params = params
        self.clock = clock
        self._entries: dict[str, dict[str, Entry]] = {}
        self._decayed_at: float | None = None
        self._store: Store | None = None

    # -- persistence: rows keyed "entryPoint:address" in the store, written through ---------
    def attach_store(self, store: Store) -> None:
        """Load the counters kept by `store` and write every later change to it, so a
        restarted bundler keeps its reputation (throttles and bans survive a restart)."""
        self._store = store
        for row in store.reputation_rows():
            ep_address, _, address = row.address.partition(":")
            if address:
                self._entries.setdefault(ep_address, {})[address] = Entry(row.ops_seen, row.ops_included)

    def _save(self, ep_address: str, address: str, e: Entry) -> None:
        if self._store is not None:
            from ..store.records import ReputationRow

            self._store.put_reputation(ReputationRow(f"{ep_address}:{address}", e.ops_seen, e.ops_included))

    # -- decay: value = value * 23 // 24 once per interval -------------------------------
    def decay(self) -> None:
        now = self.clock()
        if self._decayed_at is None or now < self._decayed_at:
            self._decayed_at = now
            return
        periods = int((now - self._decayed_at) // self.params.decay_interval_s)
        if periods <= 0:
            return
        self._decayed_at += periods * self.params.decay_interval_s
        for ep_address, book in self._entries.items():
            for address in list(book):
                e = book[address]
                for _ in range(periods):
                    if e.ops_seen == 0 and e.ops_included == 0:
                        break
                    e.ops_seen = e.ops_seen * 23 // 24
                    e.ops_included = e.ops_included * 23 // 24
                self._save(ep_address, address, e)
                if e.ops_seen == 0 and e.ops_included == 0:
                    del book[address]

    def _book(self, ep: EntryPointVersion) -> dict[str, Entry]:
        self.decay()
        return self._entries.setdefault(ep.address, {})

    def _entry(self, ep: EntryPointVersion, address: str) -> Entry:
        book = self._book(ep)
        e = book.get(address)
        if e is None:
            e = book[address] = Entry()
        return e

    # -- reads ----------------------------------------------------------------------------
    def get(self, ep: EntryPointVersion, address: str) -> Entry:
        e = self._book(ep).get(address)
        return Entry(e.ops_seen, e.ops_included) if e else Entry()

    def status_of(self, e: Entry) -> Status:
        max_seen = e.ops_seen // self.params.min_inclusion_denominator
        if max_seen > e.ops_included + self.params.ban_slack:
            return Status.BANNED
        if max_seen > e.ops_included + self.params.throttling_slack:
            return Status.THROTTLED
        return Status.OK

    def status(self, ep: EntryPointVersion, address: str) -> Status:
        return self.status_of(self.get(ep, address))

    def dump(self, ep: EntryPointVersion) -> list[tuple[str, Entry, Status]]:
        return [(a, Entry(e.ops_seen, e.ops_included), self.status_of(e)) for a, e in self._book(ep).items()]

    # -- updates --------------------------------------------------------------------------
    def seen(self, ep: EntryPointVersion, address: str) -> None:
        e = self._entry(ep, address)
        e.ops_seen += 1
        self._save(ep.address, address, e)

    def unseen(self, ep: EntryPointVersion, address: str) -> None:
        e = self._entry(ep, address)
        e.ops_seen = max(e.ops_seen - 1, 0)
        self._save(ep.address, address, e)

    def included(self, ep: EntryPointVersion, address: str) -> None:
        e = self._entry(ep, address)
        e.ops_included += 1
        self._save(ep.address, address, e)

    def penalize(self, ep: EntryPointVersion, address: str) -> None:
        """GREP-040: opsSeen = BAN_OPS_SEEN_PENALTY, opsIncluded = 0 (banned)."""
        e = self._entry(ep, address)
        e.ops_seen = self.params.ban_ops_seen_penalty
        e.ops_included = 0
        self._save(ep.address, address, e)

    def set(self, ep: EntryPointVersion, address: str, ops_seen: int, ops_included: int) -> None:
        e = self._entry(ep, address)
        e.ops_seen, e.ops_included = ops_seen, ops_included
        self._save(ep.address, address, e)

    def clear(self) -> None:
        self._entries.clear()
        self._decayed_at = None
        if self._store is not None:
            self._store.clear_reputation()


@dataclass(frozen=True, slots=True)
class EntityRef:
    role: str
    address: str
    staked: bool

    @property
    def tracked(self) -> bool:
        """Does the reputation of this address count for this op? Factories, paymasters
        and aggregators always; the sender only when staked."""
        return self.role != SENDER or self.staked

    def name(self) -> str:
        return f"{'' if self.staked or self.role == SENDER else 'unstaked '}{self.role} {to_checksum_address(self.address)}"


class OpEntities:
    """An op's entities (its sender first, then the deploying factory, the paymaster, the
    aggregator) and whether each was staked, as admission saw them; immutable. Every pending op
    holds one, so it is kept compact: the sender as its address and staked flag, the other refs
    as a tuple (the shared empty tuple for most ops, refs shared between ops, see _shared_ref),
    and `refs` built on demand (a refs tuple and the sender's EntityRef were about 100 of the
    152 bytes per pending op)."""

    __slots__ = ("_sender", "_sender_staked", "_others", "block_number")
    _sender: str | None
    _sender_staked: bool
    _others: tuple[EntityRef, ...]
    block_number: int  # the block admission validated against (THROTTLED_ENTITY_LIVE_BLOCKS)

    def __init__(self, refs: Iterable[EntityRef], block_number: int = 0) -> None:
        refs = tuple(refs)
        if refs and refs[0].role == SENDER:
            self._sender, self._sender_staked, self._others = refs[0].address, refs[0].staked, refs[1:]
        else:  # built by hand without the sender first: kept as given
            self._sender, self._sender_staked, self._others = None, False, refs
        self.block_number = block_number

    @property
    def refs(self) -> tuple[EntityRef, ...]:
        if self._sender is None:
            return self._others
        return (EntityRef(SENDER, self._sender, self._sender_staked), *self._others)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OpEntities):
            return NotImplemented
        return self.refs == other.refs and self.block_number == other.block_number

    def __hash__(self) -> int:
        return hash((self.refs, self.block_number))

    def __repr__(self) -> str:
        return f"OpEntities(refs={self.refs!r}, block_number={self.block_number!r})"

    def get(self, role: str) -> EntityRef | None:
        if role == SENDER and self._sender is not None:
            return EntityRef(SENDER, self._sender, self._sender_staked)
        return next((r for r in self._others if r.role == role), None)

    @property
    def sender(self) -> EntityRef:
        ref = self.get(SENDER)
        if ref is None:  # of() always names the sender; entities built by hand must too
            raise ValueError("an op's entities lack its sender")
        return ref

    def tracked(self) -> list[EntityRef]:
        return [r for r in self.refs if r.tracked]

    @classmethod
    def of(cls, op: UserOperation, result: ValidationResult | FastValidation | None = None, policy: StakePolicy | None = None,
           block_number: int = 0) -> "OpEntities":
        """From the op, and from a ValidationResult for stakes and the aggregator (without
        one every entity counts as unstaked)."""
        def staked(info) -> bool:
            return policy is not None and policy.is_staked(info)

        refs = [EntityRef(SENDER, op.sender, staked(getattr(result, "sender_info", None)))]
        if op.deploying_factory is not None:
            refs.append(_shared_ref(FACTORY, op.deploying_factory, staked(getattr(result, "factory_info", None))))
        if op.paymaster is not None:
            refs.append(_shared_ref(PAYMASTER, op.paymaster, staked(getattr(result, "paymaster_info", None))))
        if result is not None and result.aggregator:
            refs.append(_shared_ref(AGGREGATOR, result.aggregator, staked(getattr(result, "aggregator_info", None))))
        return cls(refs, block_number)


# factories, paymasters and aggregators serve many ops: one EntityRef each (bounded: cleared
# when full; a ref is immutable, so sharing it changes nothing but memory)
_SHARED_REFS: dict[tuple[str, str, bool], EntityRef] = {}
_SHARED_REFS_MAX = 1024


def _shared_ref(role: str, address: str, staked: bool) -> EntityRef:
    key = (role, address, staked)
    ref = _SHARED_REFS.get(key)
    if ref is None:
        if len(_SHARED_REFS) >= _SHARED_REFS_MAX:
            _SHARED_REFS.clear()
        ref = _SHARED_REFS[key] = EntityRef(role, address, staked)
    return ref


def blame(entities: OpEntities, code: str | None) -> EntityRef | None:
    """The entity at fault for a failure with AA code `code` (ERC-7562 EREP-020, EREP-030):
    AA1x the factory; AA2x the account, or its factory when that is staked and deploys it;
    AA3x the paymaster, or the sender when the sender is staked. AA10 and AA25 (the account or
    the nonce was used meanwhile) blame nobody."""
    if not code or code in RACE_CODES:
        return None
    sender, factory, paymaster = entities.get(SENDER), entities.get(FACTORY), entities.get(PAYMASTER)
    if code.startswith("AA1"):
        return factory
    if code.startswith("AA2"):
        return factory if factory is not None and factory.staked else sender
    if code.startswith("AA3"):
        return sender if sender is not None and sender.staked else paymaster
    return None


# the phase an ERC-7562 violation happened in, as the AA code prefix blame() reads
_PHASE_CODES = {"factory": "AA1", "account": "AA2", "paymaster": "AA3"}


def failure_code(message: str, data: object = None) -> str | None:
    """The AA code a failure stands for: the EntryPoint's own (AA23, ...) from its message, or,
    for an ERC-7562 rule broken in a phase, that phase's prefix (AA1 factory, AA2 account, AA3
    paymaster), so blame() treats both alike."""
    aa = re.search(r"\bAA\d\d\b", message or "")
    if aa:
        return aa.group(0)
    if isinstance(data, dict) and data.get("rule"):
        return _PHASE_CODES.get(str(data.get("entity")))
    return None


class Verdict(str, enum.Enum):
    TAKE = "take"
    SKIP = "skip"  # stays pending for a later bundle
    DROP = "drop"


class BundleGate:
    """GREP-010 / GREP-020 while one bundle is selected: banned entities' ops are dropped,
    a throttled entity gets at most THROTTLED_ENTITY_BUNDLE_COUNT ops in the bundle and its ops
    leave the mempool after THROTTLED_ENTITY_LIVE_BLOCKS blocks."""

    def __init__(self, rules: "ReputationRules", ep: EntryPointVersion, block_number: int):
        self.rules = rules
        self.ep = ep
        self.block_number = block_number
        self._status: dict[str, Status] = {}
        self._taken: dict[str, int] = {}

    def _status_of(self, address: str) -> Status:
        s = self._status.get(address)
        if s is None:
            s = self._status[address] = self.rules.book.status(self.ep, address)
        return s

    def check(self, entry: PoolEntry) -> tuple[Verdict, str | None]:
        entities = self.rules.entities_of(entry)
        params = self.rules.params
        throttled = []
        for ref in entities.refs:
            status = self._status_of(ref.address)
            if status is Status.BANNED:
                return Verdict.DROP, f"{ref.name()} is banned by this bundler's reputation rules"
            if status is Status.THROTTLED:
                age = self.block_number - entities.block_number
                if entities.block_number and age > params.throttled_entity_live_blocks:
                    return Verdict.DROP, (
                        f"{ref.name()} is throttled and its UserOperations may stay in the mempool "
                        f"{params.throttled_entity_live_blocks} blocks at most (this one: {age})"
                    )
                if self._taken.get(ref.address, 0) >= params.throttled_entity_bundle_count:
                    return Verdict.SKIP, None
                throttled.append(ref.address)
        for address in throttled:
            self._taken[address] = self._taken.get(address, 0) + 1
        return Verdict.TAKE, None


class ReputationRules:
    def __init__(self, book: ReputationBook, policy: StakePolicy, mempool: Mempool, node: NodeClient | None = None):
        self.book = book
        self.params = book.params
        self.policy = policy
        self.mempool = mempool
        self.node = node  # for paymaster deposits (EREP-010); None skips that rule
        # (entry point, sender) of the senders the last validation found staked (the unstaked
        # ones, nearly all, are not kept: one entry per sender ever seen grew without bound)
        self._staked_senders: set[tuple[str, str]] = set()

    @classmethod
    def from_config(cls, config: Config, mempool: Mempool, node: NodeClient | None = None,
                    clock: Callable[[], float] = time.time) -> "ReputationRules":
        return cls(ReputationBook(ReputationParams.from_config(config), clock), StakePolicy.from_config(config),
                   mempool, node)

    def clear(self) -> None:
        self.book.clear()
        self._staked_senders.clear()

    def entities_of(self, entry: PoolEntry) -> OpEntities:
        return entry.entities if entry.entities is not None else OpEntities.of(entry.op)

    def sender_known_staked(self, ep: EntryPointVersion, sender: str) -> bool:
        """Whether the last validation of this sender found it staked (UREP-011: a staked
        sender is not held to the per-sender mempool count)."""
        return (ep.address, sender) in self._staked_senders

    # -- admission ----------------------------------------------------------------------
    def _describe(self, ep: EntryPointVersion, address: str) -> str:
        e = self.book.get(ep, address)
        return f"opsSeen {e.ops_seen}, opsIncluded {e.ops_included}"

    def _pending_using(self, ep: EntryPointVersion, address: str, replacing) -> int:
        n = self.mempool.count_using(ep, address)
        if replacing is not None and address in replacing.addresses():
            n -= 1
        return n

    def _check_status(self, ep: EntryPointVersion, refs: Iterable[EntityRef], replacing) -> None:
        for ref in refs:
            status = self.book.status(ep, ref.address)
            if status is Status.OK:
                continue
            data = {"entity": ref.role, "address": to_checksum_address(ref.address), "status": status.value}
            if status is Status.BANNED:
                raise EntityThrottled(
                    f"{ref.role} {to_checksum_address(ref.address)} is banned by this bundler's reputation "
                    f"rules ({self._describe(ep, ref.address)}); its UserOperations are not accepted",
                    data,
                )
            pending = self._pending_using(ep, ref.address, replacing)
            if pending >= self.params.throttled_entity_mempool_count:
                raise EntityThrottled(
                    f"{ref.role} {to_checksum_address(ref.address)} is throttled ({self._describe(ep, ref.address)}) "
                    f"and already has {pending} UserOperations in the mempool, the most allowed for a "
                    f"throttled entity; retry once they are mined",
                    data,
                )

    def check_before_validation(self, op: UserOperation, ep: EntryPointVersion,
                                replacing: PoolEntry | None = None) -> None:
        """Banned or over-throttled entities are refused before any simulation is spent."""
        self._check_status(ep, OpEntities.of(op).refs, replacing)

    async def check_after_validation(self, op: UserOperation, ep: EntryPointVersion,
                                     result: ValidationResult | FastValidation, block: PinnedBlock,
                                     replacing: PoolEntry | None = None) -> OpEntities:
        """With the stakes known: status of every entity again (and of the aggregator), the
        unstaked-paymaster allowance (UREP-020) and the paymaster deposit (EREP-010)."""
        entities = OpEntities.of(op, result, self.policy, block.number)
        if entities.sender.staked:
            self._staked_senders.add((ep.address, op.sender))
        else:
            self._staked_senders.discard((ep.address, op.sender))
        self._check_status(ep, entities.refs, replacing)
        aggregator = entities.get(AGGREGATOR)
        if aggregator is not None and not aggregator.staked:  # EREP-040
            raise StakeTooLow(
                f"aggregator {to_checksum_address(aggregator.address)} is not staked; an aggregator needs "
                f"{self.policy.describe()} in the EntryPoint",
                {"entity": AGGREGATOR, "address": to_checksum_address(aggregator.address),
                 "minimumStake": str(self.policy.min_stake),
                 "minimumUnstakeDelay": str(self.policy.min_unstake_delay)},
            )
        paymaster = entities.get(PAYMASTER)
        if paymaster is not None:
            if not paymaster.staked:
                self._check_unstaked_allowance(ep, paymaster, replacing)
            await self._check_paymaster_deposit(op, ep, result, block, replacing)
        return entities

    def ops_allowed_unstaked(self, ep: EntryPointVersion, address: str) -> int:
        """UREP-020: SAME_UNSTAKED_ENTITY_MEMPOOL_COUNT + inclusionRate * min(opsIncluded, MAX)."""
        e = self.book.get(ep, address)
        extra = 0
        if e.ops_seen:
            extra = e.ops_included * min(e.ops_included, self.params.max_ops_allowed_unstaked_entity) // e.ops_seen
        return self.params.same_unstaked_entity_mempool_count + extra

    def _check_unstaked_allowance(self, ep: EntryPointVersion, ref: EntityRef, replacing) -> None:
        allowed = self.ops_allowed_unstaked(ep, ref.address)
        pending = self._pending_using(ep, ref.address, replacing)
        if pending >= allowed:
            raise StakeTooLow(
                f"unstaked {ref.role} {to_checksum_address(ref.address)} already has {pending} UserOperations "
                f"in the mempool, the most allowed for it now ({self.params.same_unstaked_entity_mempool_count} "
                f"plus what its inclusion record earns); more need {self.policy.describe()} in the EntryPoint",
                {"entity": ref.role, "address": to_checksum_address(ref.address),
                 "minimumStake": str(self.policy.min_stake),
                 "minimumUnstakeDelay": str(self.policy.min_unstake_delay)},
            )

    async def _check_paymaster_deposit(self, op: UserOperation, ep: EntryPointVersion, result, block,
                                       replacing) -> None:
        """EREP-010: the pending ops of a paymaster may not cost more than its deposit."""
        paymaster = op.paymaster
        if self.node is None or paymaster is None:
            return
        others = [e for e in self.mempool.entries_using(ep, paymaster)
                  if e.op.paymaster == paymaster and e is not replacing]
        if not others:
            return  # simulateValidation already checked this op alone against the deposit (AA31)
        committed = sum(e.prefund for e in others)
        out = await self.node.eth_call(ep.address, SEL_BALANCE_OF + encode(["address"], [paymaster]), block.tag)
        (deposit,) = decode(["uint256"], out)
        if committed + result.prefund > deposit:
            raise PaymasterDepositTooLow(
                f"paymaster deposit too low: paymaster {to_checksum_address(paymaster)} has {deposit} wei in "
                f"the EntryPoint and its {len(others)} pending UserOperations may already cost {committed}; this "
                f"one may cost {result.prefund} more",
                {"paymaster": to_checksum_address(paymaster)},
            )

    def admitted(self, entry: PoolEntry) -> None:
        """opsSeen of each entity counted for this op (after it entered the mempool)."""
        for ref in self.entities_of(entry).tracked():
            self.book.seen(entry.entry_point, ref.address)

    def replaced(self, entry: PoolEntry) -> None:
        """The op left the mempool replaced by one with higher fees (same sender and nonce): the
        new op was counted as seen, so this one is uncounted (one op seen per replacement chain,
        not one per fee bump)."""
        for ref in self.entities_of(entry).tracked():
            self.book.unseen(entry.entry_point, ref.address)

    # -- bundle time ----------------------------------------------------------------------
    def included(self, entry: PoolEntry) -> None:
        """The op was mined in a bundle: opsIncluded of the entities counted as seen."""
        for ref in self.entities_of(entry).tracked():
            self.book.included(entry.entry_point, ref.address)

    def bundle_failure(self, entry: PoolEntry, code: str | None, second_validation: bool = False) -> list[PoolEntry]:
        """An op failed at bundle time with AA `code` (failure_code() of the error). The op's
        paymaster, when another entity is at fault, gets its opsSeen back (EREP-015, and
        EREP-030's staked sender). The entity at fault gets opsSeen = BAN_OPS_SEEN_PENALTY,
        opsIncluded = 0 (banned) when the failure came from building the bundle (GREP-040), or
        from the second validation and the entity is staked (SREP-050: a staked entity answers
        for its ops; with EREP-020 a staked factory for the account it deploys). An unstaked
        entity failing the second validation is not banned (EREP-030: ops it merely took part
        in; the chain may have moved under it): it keeps an op seen that is never included.
        Returns the other pending ops that use an entity banned now (GREP-010), for the
        caller to drop."""
        ep = entry.entry_point
        entities = self.entities_of(entry)
        at_fault = blame(entities, code)
        paymaster = entities.get(PAYMASTER)
        if paymaster is not None and at_fault is not None and at_fault is not paymaster:
            self.book.unseen(ep, paymaster.address)
        if at_fault is None or not at_fault.tracked or (second_validation and not at_fault.staked):
            return []
        log.warning("%s failed at bundle time (%s) because of %s: penalized", entry.hash, code, at_fault.name())
        self.book.penalize(ep, at_fault.address)
        return [e for e in self.mempool.entries_using(ep, at_fault.address)
                if e is not entry and e.submitted_in is None]

    def bundle_gate(self, ep: EntryPointVersion, block_number: int) -> BundleGate:
        return BundleGate(self, ep, block_number)
