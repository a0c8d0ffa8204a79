"""eth_sendUserOperation's pipeline: static checks, simulation against the latest block,
then the mempool rules. Every refusal is a BundlerError with its ERC-7769 code."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from ..chain.clock import InclusionWindow
from ..chain.head import HeadTracker
from ..chain.types import PinnedBlock, StateOverrides
from ..config import Config
from ..entrypoint import EntryPointVersion
from ..errors import BundlerError, InvalidParams
from ..sim.ep_storage import queued_nonce_override
from ..sim.protocol import Validator
from ..sim.results import ValidationResult
from ..gas.pvg import floor_pre_verification_gas, required_pre_verification_gas
from ..logs import OP_HASH
from ..store.base import Store
from ..store.records import OpRecord, OpStatus
from ..userop.model import UserOperation
from .capacity import CapacityGuard
from .eip7702 import Eip7702Checker
from .mempool import REPLACEMENT_BUMP_PERCENT, Mempool, PoolEntry, in_bundle_error, underpriced_error
from .safe import SafeMode
from .reputation import ReputationRules
from .session_gate import FastValidation, SessionGate

log = logging.getLogger(__name__)

MIN_CALL_GAS_LIMIT = 9_100  # a CALL carrying value costs at least this much (ERC-7562 / EIP-150)


def static_checks(op: UserOperation, ep: EntryPointVersion, config: Config, base_fee: int) -> None:
    if op.verification_gas_limit > config.max_verification_gas:
        raise InvalidParams(
            f"verificationGasLimit {op.verification_gas_limit} is above this bundler's maximum "
            f"{config.max_verification_gas}"
        )
    if op.call_gas_limit < MIN_CALL_GAS_LIMIT and op.call_data:
        raise InvalidParams(f"callGasLimit {op.call_gas_limit} is below the minimum {MIN_CALL_GAS_LIMIT}")
    total_gas = op.total_gas_limit()
    if total_gas > config.max_bundle_gas:
        raise InvalidParams(
            f"the op's total gas ({total_gas}) exceeds the bundle gas limit {config.max_bundle_gas}"
        )
    if op.max_priority_fee_per_gas > op.max_fee_per_gas:
        raise InvalidParams("maxPriorityFeePerGas is higher than maxFeePerGas")
    if op.max_priority_fee_per_gas < config.min_priority_fee:
        raise InvalidParams(
            f"maxPriorityFeePerGas {op.max_priority_fee_per_gas} is below this bundler's minimum "
            f"{config.min_priority_fee}"
        )
    if op.max_fee_per_gas < base_fee:
        raise InvalidParams(
            f"maxFeePerGas {op.max_fee_per_gas} is below the current base fee {base_fee}; "
            f"the op could not be included"
        )
    need = required_pre_verification_gas(op)
    if op.pre_verification_gas < need:
        floor = floor_pre_verification_gas(op)
        raise InvalidParams(
            f"preVerificationGas {op.pre_verification_gas} is too low: at least {need} is needed "
            f"to cover the op's calldata (EIP-7623 calldata floor {floor})",
            {"field": "preVerificationGas", "minimum": hex(need)},
        )
    if op.is_eip7702 and not ep.supports_eip7702:
        raise InvalidParams(f"EIP-7702 UserOperations need EntryPoint v0.8 or later (got v{ep.version})")
    if op.eip7702_auth is not None and not ep.supports_eip7702:
        raise InvalidParams(f"eip7702Auth needs EntryPoint v0.8 or later (got v{ep.version})")


class Admission:
    def __init__(self, *, head: HeadTracker, simulator: Validator, mempool: Mempool, store: Store, config: Config,
                 chain_id: int, safe: SafeMode, on_admitted: Callable[[PoolEntry], None] | None = None,
                 reputation: ReputationRules | None = None, eip7702: Eip7702Checker | None = None,
                 sessions: SessionGate[Any] | None = None, capacity: CapacityGuard | None = None):
        self.head = head
        self.sessions = sessions  # sessions.service.SessionService: policy checks and fast path
        self.simulator = simulator
        self.mempool = mempool
        self.store = store
        self.config = config
        self.chain_id = chain_id
        self.on_admitted = on_admitted
        self.reputation = reputation  # pool.reputation.ReputationRules (None: no reputation rules)
        self.eip7702 = eip7702  # pool.eip7702.Eip7702Checker (None: authorizations not checked)
        self.safe = safe  # the ERC-7562 rules (off with --unsafe): tracer, enforce, what an entry keeps
        self.capacity = capacity  # CapacityGuard (max_mempool_ops), optional

    def timing(self, window: InclusionWindow) -> dict:
        """Simulator.validate's time-range arguments for an inclusion window."""
        return {"now": window.earliest, "latest": window.latest,
                "max_wait": getattr(self.config, "valid_after_max_wait", 0),
                "next_block": window.next_block, "block_time": window.block_time}

    def nonce_override(self, op: UserOperation, ep: EntryPointVersion) -> StateOverrides | None:
        """Ops of one sender queue up: an op whose nonce follows pending ops of the same
        sender and key is validated as if those were already mined."""
        pending = {e.op.nonce for e in self.mempool.for_sender(op.sender)
                   if e.entry_point == ep and e.op.nonce_key == op.nonce_key}
        if not pending:  # (a replacement of a queued op is validated on top of the ops below it too)
            return None
        seq = op.nonce_sequence
        if seq == 0 or (op.nonce - 1) not in pending:
            return None
        return queued_nonce_override(ep, op)

    async def submit(self, op: UserOperation, ep: EntryPointVersion) -> str:
        """Admit the op (its hash) or raise its refusal. The head block the tracker confirmed a
        moment ago does (no header request per op); a refusal there is only final if the node's
        latest block is still that one, else the op is judged again on the newer block, so an
        op made valid by a transaction just mined is not refused."""
        seen = self.head.recent(getattr(self.config, "admission_head_max_age_ms", 0) / 1000)
        if seen is None:
            judged = await self._judge(op, ep, await self.head.fresh())
        else:
            try:
                judged = await self._judge(op, ep, seen)
            except BundlerError:
                latest = await self.head.fresh()
                if latest.hash == seen.hash:
                    raise
                judged = await self._judge(op, ep, latest)
        return await self._accept(judged)

    async def _judge(self, op: UserOperation, ep: EntryPointVersion, header: PinnedBlock) -> "_Judged":
        """Every check of the op against the block `header`; nothing is stored or changed."""
        static_checks(op, ep, self.config, header.base_fee)
        delegate = _delegate(op)
        if self.eip7702 is not None:
            delegate = await self.eip7702.delegate_for(op, header.tag)
        op_hash = "0x" + ep.user_op_hash(op, self.chain_id, delegate).hex()
        OP_HASH.set(op_hash)  # log lines about this op carry its hash
        known = self.store.get(op_hash)
        if known is not None and known.status in (OpStatus.PENDING, OpStatus.SUBMITTED, OpStatus.MINED):
            raise InvalidParams(f"UserOperation {op_hash} is already known and {known.status.value}")
        # time ranges are judged at inclusion, not at the head block: an op that expires before
        # the including block is refused, one valid within valid_after_max_wait is held (chain.clock)
        window = self.head.window(header)
        sessions = self.sessions
        session = await sessions.prepare(op, ep, header, op_hash) if sessions is not None else None
        if session is None:
            sessions = None  # not a session op: the gate has nothing more to say about it
        cap = sessions.max_ops_per_sender if sessions is not None else None
        rep = self.reputation
        sender_staked = rep is not None and rep.sender_known_staked(ep, op.sender)
        replacing = self.mempool.check_admissible(op, ep, sender_staked, max_ops=cap)
        if rep is not None:
            rep.check_before_validation(op, ep, replacing)
        if self.capacity is not None:
            self.capacity.check(op, header.base_fee, replacing)
        # a session op's policy is checked before any simulation; the fast path skips py-evm
        outcome: FastValidation | ValidationResult | None = None
        if sessions is not None:
            outcome = sessions.precheck(session, replacing.hash if replacing is not None else None, window)
        if outcome is None:
            outcome = await self.simulator.validate(op, ep, header, overrides=self.nonce_override(op, ep),
                                                    tracer=self.safe.tracer(op, ep), **self.timing(window))
            self.safe.enforce(op, ep, outcome)  # ERC-7562 rules (off with --unsafe)
        entities = None
        if rep is not None:
            entities = await rep.check_after_validation(op, ep, outcome, header, replacing)
            sender_staked = entities.sender.staked
        # the pool may have changed while we simulated
        replaced = self.mempool.check_admissible(op, ep, sender_staked, max_ops=cap)
        victim = self.capacity.check(op, header.base_fee, replaced) if self.capacity is not None else None
        if sessions is not None:
            sessions.recheck(session, replaced)
        entry = PoolEntry(
            op=op, entry_point=ep, hash=op_hash,
            valid_after=outcome.valid_after, valid_until=outcome.valid_until,
            valid_after_block=outcome.valid_after_block, valid_until_block=outcome.valid_until_block,
            prefund=outcome.prefund, eip7702_delegate=delegate, entities=entities,
            code_hashes=self.safe.code_hashes(outcome),
            validation=self.safe.kept(op, outcome),
            validated_block=header.hash,
        )
        return _Judged(entry, header, replaced, victim, session)

    async def _accept(self, judged: "_Judged") -> str:
        """Store the admitted op (durably, before the client hears back) and pool it."""
        entry, header, replaced, victim, session = (judged.entry, judged.header, judged.replaced,
                                                    judged.victim, judged.session)
        op, op_hash, rep = entry.op, entry.hash, self.reputation
        # the store decides the (sender, nonce) slot: with a shared store, across all instances
        record = OpRecord(hash=op_hash, entry_point=entry.entry_point.address, op=op, valid_after=entry.valid_after,
                          valid_until=entry.valid_until, prefund=entry.prefund,
                          eip7702_delegate=entry.eip7702_delegate, received_at=entry.received_at)
        try:
            verdict = await self.store.admit(record, replaced.hash if replaced is not None else None,
                                             REPLACEMENT_BUMP_PERCENT)
        except Exception as e:  # the shared database is unreachable: nothing was acknowledged
            log.error("could not store op %s: %s", op_hash, e)
            raise BundlerError(f"the bundler could not store the UserOperation ({e}); try again") from None
        if not verdict.admitted:
            raise _refusal(op_hash, verdict)
        if victim is not None and self.capacity is not None:
            self.capacity.evict(victim, op_hash, header.base_fee)
        if session is not None and self.sessions is not None:  # accounted first: the mempool's observers
            self.sessions.admitted(session, entry)  # see it as a session op
        self.mempool.add(entry)
        if rep is not None:
            rep.admitted(entry)
            if replaced is not None:
                rep.replaced(replaced)
        await self._persist(entry, replaced)
        # debug, not info: a line per op costs the main process more than a header request
        log.debug("admitted op %s sender %s nonce %s", op_hash, op.sender, hex(op.nonce))
        if self.on_admitted:
            self.on_admitted(entry)
        return op_hash


    async def _persist(self, entry: PoolEntry, replaced: PoolEntry | None) -> None:
        """The acknowledgement is durable: the op is in the store before the client hears back."""
        try:
            await self.store.flush()
        except Exception as e:
            log.error("could not persist op %s: %s", entry.hash, e)
            self.mempool.remove(entry.hash)
            if replaced is not None and self.mempool.get(replaced.hash) is None:
                self.mempool.add(replaced)
            raise BundlerError(f"the bundler could not store the UserOperation ({e}); try again") from None


@dataclass
class _Judged:
    """An op that passed every check at `header`, with what admitting it will change."""
    entry: PoolEntry
    header: PinnedBlock
    replaced: PoolEntry | None
    victim: PoolEntry | None
    session: Any


def _refusal(op_hash: str, verdict) -> InvalidParams:
    """The shared pool said no: another instance holds this op or its slot."""
    if verdict.refusal == "known":
        return InvalidParams(f"UserOperation {op_hash} is already known and {verdict.holder}")
    if verdict.refusal == "in_bundle":
        return in_bundle_error()
    fee, priority = verdict.holder_fees or (0, 0)
    return underpriced_error(fee, priority)


def _delegate(op: UserOperation) -> str | None:
    return op.eip7702_auth.address if op.is_eip7702 and op.eip7702_auth else None
