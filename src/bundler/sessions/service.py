"""Session-aware validation inside the bundler: recognition of SessionAccount ops, policy
evaluation against the account's state plus the mempool's pending usage, the admission fast
path, the revocation/expiry watcher, and what the session_* RPC methods read.

Admission (pool.admission) calls, for every op:

    sop = await sessions.prepare(op, ep, header, op_hash)   # None: not a session op
    fast = sessions.precheck(sop, replacing, window)       # policy errors, signature; fast-path outcome or None
    ... py-evm simulation unless `fast` ...
    sessions.recheck(sop, replaced)                         # re-evaluate if the ledger moved meanwhile
    sessions.admitted(sop, entry); mempool.add(entry)       # pending usage + audit log

Recognition (no guessing from the signature alone):
  - deployed clone: eth_getCode is the ERC-1167 runtime of a known implementation of this
    EntryPoint (session_sdk.addresses.implementation_of)
  - EIP-7702: the code is the delegation designator to the known v0.8 implementation, or the op
    itself carries an eip7702Auth to it
  - first op: factory is a known SessionAccountFactory of this EntryPoint, factoryData is
    createAccount(owner, salt) and factory.getAddress(owner, salt) == sender
and the signature's first byte is 0x01 (session) or 0x02 (enable). Owner ops (0x00) are left
to the simulation unchanged.

Fast path (no py-evm run at admission) only when all of these hold: session mode 0x01, account
already deployed (no factory, no eip7702Auth), no paymaster, the policy evaluation passes
against on-chain state + pending usage, the session signature recovers to the session key
(coincurve), the time range is inside the window with the valid-until margin, the EntryPoint
nonce is the on-chain one or follows pending ops of the same key without a gap, balance +
EntryPoint deposit cover this op's and the sender's other pending ops' maximum cost, and
verificationGasLimit is at least sessions.gas.validation_gas_bound. What validation could do
beyond that is fixed: the account code is the known implementation (clone or delegation), which
reads only its own storage, calls only ecrecover and the EntryPoint. The builder still
simulates the whole bundle before sending it, so a wrong fast-path decision costs no gas; it
would only show as an op dropped at bundle time with its reason.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter as Tally
from dataclasses import dataclass

from eth_abi import decode

from session_sdk.types import ZERO_ADDRESS
from session_sdk.eip712 import eip712_spec_digest
from session_sdk.signatures import MODE_ENABLE, MODE_SESSION, EnableSignature, SessionSignature
from session_sdk.calldata import SEL_CREATE_ACCOUNT
from session_sdk.addresses import delegation_code, implementation_of
from session_sdk.events import TOPIC_ALL_SESSIONS_REVOKED, TOPIC_SESSION_GRANTED, TOPIC_SESSION_REVOKED

from .. import faults
from ..entrypoint import EntryPointVersion
from ..errors import BundlerError, InvalidParams, SignatureInvalid, TimeRangeInvalid, ValidationRejected
from ..chain.clock import InclusionWindow
from ..chain.head import HeadTracker
from ..chain.types import PinnedBlock, StateOverrides
from ..config import Config
from ..pool.mempool import PoolEntry
from ..store.records import SessionActivity
from ..userop.model import UserOperation
from .gas import validation_gas_bound
from .keeper import LedgerKeeper
from .ledger import LedgerEntry, SessionLedger
from .policy import (
    Evaluation, OpFacts, PendingUse, SessionState, SessionViolation, check_window, checksummed,
    decode_session_signature, evaluate,
)
from .ports import SessionActivityStore, SessionOpDropper, SessionPoolView
from .recover import recover_signer
from .registry import SessionContracts
from ..chain.client import NodeClient
from .state import AccountView, SessionStateReader
from .views import ActivityItem, SessionReport, limit_uses, status_of

log = logging.getLogger(__name__)

UINT48_MAX = (1 << 48) - 1
MAX_NONCE_LOOKAHEAD = 64
LOG_RANGE_MAX = 2_000  # most blocks one eth_getLogs of the watcher spans


@dataclass(frozen=True, slots=True)
class FastOutcome:
    """What admission needs from a validation, decided without simulating (same attributes as
    sim.ValidationResult uses there)."""

    valid_after: int
    valid_until: int  # UINT48_MAX = unbounded, like ValidationData
    prefund: int
    # no factory, paymaster or aggregator on the fast path; the sender counts as unstaked
    aggregator: None = None
    # session windows are timestamps: no v0.9 block range
    valid_after_block: int = 0
    valid_until_block: int = (1 << 47) - 1  # sim.results.VALIDITY_BLOCK_RANGE_MASK: no bound


@dataclass(slots=True)
class SessionOp:
    op: UserOperation
    ep: EntryPointVersion
    op_hash: str | None
    account: str
    implementation: str
    kind: str  # "clone" | "eip7702" | "deploy"
    sig: SessionSignature | EnableSignature
    state: SessionState
    state_block: int
    owner: str | None
    view: AccountView | None = None
    evaluation: Evaluation | None = None
    ledger_version: int = -1
    replacing: str | None = None
    fast: FastOutcome | None = None

    @property
    def signer(self) -> str:
        return self.sig.signer


def chain_now(header: PinnedBlock) -> int:
    """The time the next block will (at least) have: wall clock, or the chain's clock when it is
    ahead (dev chains moved with evm_increaseTime). For reports (session_getSession's "now");
    admission judges time ranges against the head tracker's InclusionWindow."""
    return max(int(time.time()), header.timestamp)


class SessionService:
    def __init__(self, *, contracts: SessionContracts, rpc: NodeClient, head: HeadTracker, mempool: SessionPoolView,
                 store: SessionActivityStore, fates: SessionOpDropper, config: Config, chain_id: int):
        self.contracts = contracts
        self.rpc = rpc
        self.reader = SessionStateReader(rpc)
        self.head = head
        self.mempool = mempool
        self.store = store
        self.fates = fates  # the pool's writer of op status (drops of revoked / expired sessions' ops)
        self.config = config
        self.chain_id = chain_id
        self.fast_path = getattr(config, "session_fast_path", True)
        self.sender_cap = getattr(config, "session_max_ops_per_sender", 16)
        self.margin = getattr(config, "valid_until_margin", 30)
        self.max_wait = getattr(config, "valid_after_max_wait", 0)
        self.ledger = SessionLedger()
        # every op entering the pool is accounted, however it came in (restart, reorg, ...)
        self.keeper = LedgerKeeper(self.ledger, store, enabled=lambda: bool(self.contracts))
        mempool.observe(self.keeper)
        self.stats: Tally = Tally()  # fast / full / refused / dropped_revoked / dropped_expired ...
        self._last_block: int | None = None

    @classmethod
    async def create(cls, *, config: Config, head: HeadTracker, mempool: SessionPoolView,
                     store: SessionActivityStore, fates: SessionOpDropper,
                     chain_id: int, entry_points: list[EntryPointVersion]) -> "SessionService":
        rpc = NodeClient(config.rpc_url, timeout=10.0)
        contracts = await SessionContracts.discover(
            rpc, list(entry_points), getattr(config, "session_implementations", None),
            getattr(config, "session_factories", None))
        for line in contracts.describe():
            log.info("session accounts: %s", line)
        return cls(contracts=contracts, rpc=rpc, head=head, mempool=mempool, store=store, fates=fates,
                   config=config, chain_id=chain_id)

    async def close(self) -> None:
        await self.rpc.close()

    # ------------------------------------------------------------ recognition

    async def prepare(self, op: UserOperation, ep: EntryPointVersion, header: PinnedBlock, op_hash: str | None
                      ) -> SessionOp | None:
        """The op as a session op of a SessionAccount, with the account's state read at
        `header`; None when it is not one (the caller validates it the ordinary way)."""
        sig_bytes = op.signature
        if not self.contracts or not sig_bytes or sig_bytes[0] not in (MODE_SESSION, MODE_ENABLE):
            return None
        kind: str | None = None
        impl: str | None = None
        owner: str | None = None
        code_override = None
        salt = 0
        if op.is_eip7702:
            auth = op.eip7702_auth
            if auth is None or self.contracts.entry_point_of(auth.address) is not ep:
                return None
            kind, impl = "eip7702", auth.address
            code_override = delegation_code(impl)
        elif op.factory is not None:
            impl = self.contracts.factories.get(op.factory)
            if impl is None or self.contracts.entry_point_of(impl) is not ep:
                return None
            if bytes(op.factory_data[:4]) != SEL_CREATE_ACCOUNT:
                return None
            try:
                owner, salt = decode(["address", "uint256"], bytes(op.factory_data[4:]))
            except Exception:
                return None
            owner = owner.lower()
            kind = "deploy"
        try:
            sig = decode_session_signature(sig_bytes)
        except ValueError as e:
            if kind is None:
                return None  # unknown account: maybe not ours at all; the simulation decides
            raise ValidationRejected(
                f"invalid session signature (the account would revert InvalidSignatureFormat): {e}",
                {"account": op.sender, "rule": "InvalidSignatureFormat"},
            ) from None
        if kind == "deploy":
            if op.factory is None or owner is None or impl is None:  # set together with kind "deploy" above
                return None
            address = await self.reader.counterfactual_address(op.factory, owner, salt, header)
            if address != op.sender:
                return None
            return SessionOp(op, ep, op_hash, op.sender, impl, kind, sig, SessionState(), header.number, owner)
        view = await self.reader.read(ep, op.sender, sig.signer, op.nonce_key, header, code_override=code_override)
        if kind is None:
            impl = implementation_of(view.code)
            if impl is None or self.contracts.entry_point_of(impl) is not ep:
                return None
            kind = "clone" if len(view.code) == 45 else "eip7702"
        if impl is None:  # every kind found above comes with its implementation
            return None
        if view.state_error is not None:
            log.debug("session state of %s unreadable (%s): full simulation", op.sender, view.state_error)
            return None
        return SessionOp(op, ep, op_hash, op.sender, impl, kind, sig, view.state, view.block_number,
                         view.owner, view)

    # ------------------------------------------------------------ evaluation

    def _error(self, v: SessionViolation, sop: SessionOp) -> BundlerError:
        data = {**v.data, "entryPoint": sop.ep.address}
        if v.time_range:
            return TimeRangeInvalid(v.message, data)
        return ValidationRejected(v.message, data)

    def evaluate(self, sop: SessionOp, replacing: str | None) -> Evaluation:
        chain_nonce = sop.view.nonce if sop.view is not None else None
        pending = self.ledger.pending_for(sop.account, sop.signer, sop.state_block, exclude=replacing,
                                          chain_nonce=chain_nonce)
        version = self.ledger.version
        try:
            ev = evaluate(sop.account, sop.state, sop.sig, sop.op.call_data, pending,
                          OpFacts.of(sop.op, sop.ep.address, sop.implementation))
        except SessionViolation as v:
            self.stats["refused"] += 1
            raise self._error(v, sop) from None
        sop.evaluation, sop.ledger_version, sop.replacing = ev, version, replacing
        return ev

    def _check_signatures(self, sop: SessionOp) -> None:
        if sop.op_hash is None:
            raise ValueError("a session op's signatures are checked against its userOpHash: prepare() was given none")
        digest = bytes.fromhex(sop.op_hash[2:])
        sig = sop.sig
        if isinstance(sig, EnableSignature) and sop.owner is not None:
            # an op carrying a 7702 authorization starts the next epoch before the grant
            epoch = sop.state.epoch + (1 if sop.op.is_eip7702 else 0)
            enable_digest = eip712_spec_digest(sig.spec, sig.nonce, sop.account, self.chain_id, epoch)
            recovered = recover_signer(enable_digest, sig.owner_signature)
            if recovered != sop.owner:
                raise SignatureInvalid(
                    f"Invalid UserOperation signature: the enable signature is not the owner's: the EIP-712 "
                    f"EnableSession(spec, nonce {sig.nonce}, epoch {epoch}) digest for account {checksummed(sop.account)} on chain "
                    f"{self.chain_id} recovers to {checksummed(recovered) if recovered else 'nothing'}, the owner is "
                    f"{checksummed(sop.owner)}",
                    {"account": sop.account, "sessionKey": sop.signer, "owner": sop.owner, "recovered": recovered},
                )
        recovered = recover_signer(digest, sig.signature)
        if recovered != sop.signer:
            raise SignatureInvalid(
                f"Invalid UserOperation signature: the session signature over userOpHash {sop.op_hash} recovers to "
                f"{checksummed(recovered) if recovered else 'nothing'}, not to session key {checksummed(sop.signer)} (sign the raw hash, 65 bytes r‖s‖v, low s)",
                {"account": sop.account, "sessionKey": sop.signer, "recovered": recovered},
            )

    @staticmethod
    def _nonce_follows(op: UserOperation, ep: EntryPointVersion, chain_nonce: int, pool_ops: list[PoolEntry]) -> bool:
        """`pool_ops`: the sender's pending ops (mempool.for_sender)."""
        if op.nonce == chain_nonce:
            return True
        if op.nonce < chain_nonce or op.nonce - chain_nonce > MAX_NONCE_LOOKAHEAD:
            return False
        pending = {e.op.nonce for e in pool_ops if e.entry_point == ep}
        return all(n in pending for n in range(chain_nonce, op.nonce))

    def _fast_outcome(self, sop: SessionOp, ev: Evaluation, replacing: str | None) -> FastOutcome | None:
        op, view = sop.op, sop.view
        if (not self.fast_path or view is None or sop.kind == "deploy" or ev.mode != MODE_SESSION
                or op.paymaster is not None or op.factory is not None or op.eip7702_auth is not None):
            return None
        if view.nonce is None:
            return None
        pool_ops = self.mempool.for_sender(op.sender)  # once for both checks (no await between them)
        if not self._nonce_follows(op, sop.ep, view.nonce, pool_ops):
            return None
        others = [e for e in pool_ops if e.hash != replacing]
        max_cost = op.max_cost()
        need = max_cost + sum(e.prefund for e in others)
        if view.balance + view.deposit < need:
            return None
        if op.verification_gas_limit < self._gas_bound(sop, ev, bool(others)):
            return None
        return FastOutcome(ev.valid_after, ev.valid_until or UINT48_MAX, max_cost)

    @staticmethod
    def _gas_bound(sop: SessionOp, ev: Evaluation, others_pending: bool) -> int:
        view, op = sop.view, sop.op
        if view is None or view.nonce is None:
            return validation_gas_bound(ev, len(op.call_data))
        return validation_gas_bound(
            ev, len(op.call_data), fresh_nonce=view.nonce & ((1 << 64) - 1) == 0,
            pays_prefund=others_pending or view.deposit < op.max_cost(), fresh_deposit=view.deposit == 0)

    def _check_window(self, sop: SessionOp, ev: Evaluation, window) -> None:
        check_window(ev, window.earliest, self.margin, latest=window.latest, max_wait=self.max_wait,
                     strict=sop.ep.valid_after_strict)

    def precheck(self, sop: SessionOp, replacing: str | None, window: InclusionWindow) -> FastOutcome | None:
        """Signatures first (a coincurve recovery costs less than evaluating a large batch, and an
        op nobody signed earns no policy work), then the policy (as the contract would revert),
        then the time range (as the EntryPoint would refuse it) against `window`, the bounds of
        the inclusion time (chain.clock.InclusionWindow): an op valid only later is held, one
        that expires before inclusion is refused. Returns the fast-path outcome when the op
        qualifies, else None (simulate it)."""
        self._check_signatures(sop)
        ev = self.evaluate(sop, replacing)
        try:
            self._check_window(sop, ev, window)
        except SessionViolation as v:
            self.stats["refused"] += 1
            raise self._error(v, sop) from None
        sop.fast = self._fast_outcome(sop, ev, replacing)
        self.stats["fast" if sop.fast else "full"] += 1
        return sop.fast

    def recheck(self, sop: SessionOp, replaced: PoolEntry | None) -> None:
        """Right before the op enters the pool (no await in between): evaluate again if other
        ops of the session came or went since precheck."""
        replacing = replaced.hash if replaced is not None else None
        if sop.ledger_version != self.ledger.version or replacing != sop.replacing:
            self.evaluate(sop, replacing)

    @property
    def max_ops_per_sender(self) -> int:
        return self.sender_cap

    def admitted(self, sop: SessionOp, entry: PoolEntry) -> None:
        """Called right before the entry enters the mempool (so the LedgerKeeper finds it
        accounted already)."""
        ev = sop.evaluation
        if ev is None:
            raise ValueError(f"session op {entry.hash} is admitted without having been evaluated")
        use = PendingUse(entry.hash, sop.op.nonce, ev.period_index, ev.consumed, ev.grant)
        self.ledger.add(LedgerEntry(use, sop.account, sop.signer, sop.ep.address, ev.valid_after, ev.valid_until))
        self.store.add_session_activity(SessionActivity(
            op_hash=entry.hash, account=sop.account, session_key=sop.signer, entry_point=sop.ep.address,
            nonce=sop.op.nonce, mode="enable" if ev.grant is not None else "session", period_index=ev.period_index,
            calls=[{"target": c.target, "value": c.value, "data": "0x" + c.data.hex()} for c in ev.calls],
            consumed=[{"scope": c.scope, "policyIndex": c.policy_index, "constraintIndex": c.constraint_index,
                       "amount": c.amount} for c in ev.consumed],
        ))

    # ------------------------------------------------------------ estimation

    async def check_estimate(self, op: UserOperation, ep: EntryPointVersion, header: PinnedBlock,
                             state_override: StateOverrides | None = None) -> int:
        """eth_estimateUserOperationGas of a session op (dummy signatures welcome): the policy
        and window are checked like at admission (signatures are not). Returns the least
        verificationGasLimit that keeps a session-mode op on the fast path (0 if none)."""
        if state_override and op.sender in {str(a).lower() for a in state_override}:
            return 0  # the caller rewrites the account's state: the simulation alone decides
        sop = await self.prepare(op, ep, header, None)
        if sop is None:
            return 0
        replacing = next((e.hash for e in self.mempool.for_sender(op.sender)
                          if e.entry_point == ep and e.op.nonce == op.nonce), None)
        ev = self.evaluate(sop, replacing)
        try:
            self._check_window(sop, ev, self.head.window(header))
        except SessionViolation as v:
            raise self._error(v, sop) from None
        if ev.mode != MODE_SESSION or sop.kind == "deploy":
            return 0
        # the client fills in gas and fees later: assume the op pays its prefund
        return validation_gas_bound(ev, len(op.call_data), fresh_nonce=sop.view is None or sop.view.nonce is None
                                    or sop.view.nonce & ((1 << 64) - 1) == 0,
                                    fresh_deposit=sop.view is None or sop.view.deposit == 0)

    # ------------------------------------------------------------ watcher

    async def run(self) -> None:
        """Per new block: forget mined ops the state now shows, drop pending ops of sessions
        that were revoked or expired, re-check pending ops of sessions granted anew."""
        retry_in = 0.5
        while True:
            header = await self.head.wait_new_block(self._last_block, 2.0)
            if header is None or header.number == self._last_block:
                continue
            try:
                await self.on_block(header)
            except asyncio.CancelledError:
                raise
            except Exception:
                # the blocks since _last_block are read again next round (eth_getLogs failed:
                # a revocation in them must not be missed); retried with a growing pause
                log.exception("session watcher failed on block %s; retrying in %.1f s", header.number, retry_in)
                await asyncio.sleep(retry_in)
                retry_in = min(retry_in * 2, 10.0)
                continue
            retry_in = 0.5
            self._last_block = header.number

    def _drop(self, op_hash: str, reason: str, code: int) -> bool:
        entry = self.mempool.get(op_hash)
        if entry is None or entry.submitted_in is not None:
            return False  # gone already, or in a bundle transaction: its receipt will tell
        log.info("dropping session op %s: %s", op_hash, reason)
        self.fates.removed(entry, reason, code)
        return True

    def drop_session_ops(self, account: str, signer: str, reason: str) -> list[str]:
        """Drop the session's ops still waiting in the mempool (not those already in a bundle
        transaction), e.g. when its key was destroyed; the hashes dropped."""
        return [e.op_hash for e in self.ledger.entries(account.lower(), signer.lower())
                if self._drop(e.op_hash, reason, ValidationRejected.code)]

    async def on_block(self, header: PinnedBlock) -> None:
        previous = self._last_block
        self.ledger.prune_mined(header.number - 1)
        latest = self.head.window(header).latest  # expired by the time a bundle could include it
        for e in self.ledger.all_entries():
            if e.mined_block is None and e.valid_until and e.valid_until < latest:
                if self._drop(e.op_hash, f"session {checksummed(e.signer)} expired (validUntil {e.valid_until}) before the op "
                                         f"was included", TimeRangeInvalid.code):
                    self.stats["dropped_expired"] += 1
        accounts = sorted(self.ledger.accounts())
        if not accounts:
            return
        start = header.number if previous is None else max(previous + 1, header.number - LOG_RANGE_MAX)
        if start > header.number:
            return
        faults.fail_point("sessions.get_logs")
        logs = await self.rpc.get_logs({
            "address": accounts,
            "topics": [["0x" + TOPIC_SESSION_REVOKED.hex(), "0x" + TOPIC_SESSION_GRANTED.hex(),
                        "0x" + TOPIC_ALL_SESSIONS_REVOKED.hex()]],
            "fromBlock": hex(start), "toBlock": hex(header.number),
        })
        regranted: set[tuple[str, str]] = set()
        for entry in logs or []:
            if entry.get("removed") or not entry.get("topics"):
                continue
            account = entry["address"].lower()
            if bytes.fromhex(entry["topics"][0][2:]) == TOPIC_ALL_SESSIONS_REVOKED:
                block = int(entry["blockNumber"], 16)
                for signer in [s for a, s in self.ledger.sessions() if a == account]:
                    regranted.discard((account, signer))
                    for e in self.ledger.entries(account, signer):
                        if self._drop(e.op_hash, f"every session of account {checksummed(account)} was revoked in block {block} "
                                                 f"(a new epoch)", ValidationRejected.code):
                            self.stats["dropped_revoked"] += 1
                continue
            if len(entry["topics"]) < 2:
                continue
            signer = "0x" + entry["topics"][1][-40:].lower()
            if bytes.fromhex(entry["topics"][0][2:]) == TOPIC_SESSION_REVOKED:
                regranted.discard((account, signer))
                block = int(entry["blockNumber"], 16)
                for e in self.ledger.entries(account, signer):
                    if self._drop(e.op_hash, f"session {checksummed(signer)} of account {checksummed(account)} was revoked in block {block} "
                                             f"(tx {entry.get('transactionHash')})", ValidationRejected.code):
                        self.stats["dropped_revoked"] += 1
            else:
                regranted.add((account, signer))
        for account, signer in regranted:
            await self._revalidate(account, signer, header)

    async def _revalidate(self, account: str, signer: str, header) -> None:
        """A new grant replaced the session (fresh counters, maybe another spec): walk its pending
        ops in nonce order against the new state; drop those that no longer pass."""
        entries = self.ledger.entries(account, signer)
        if not entries:
            return
        ep = next((e.entry_point for e in map(self.mempool.get, (x.op_hash for x in entries)) if e is not None), None)
        if ep is None:
            return
        view = await self.reader.read(ep, account, signer, 0, header)
        if view.state_error is not None:
            return
        kept: list[PendingUse] = []
        for e in entries:
            pool_entry = self.mempool.get(e.op_hash)
            if pool_entry is None:
                continue
            try:
                sig = decode_session_signature(pool_entry.op.signature)
                facts = OpFacts.of(pool_entry.op, ep.address, implementation_of(view.code) or ZERO_ADDRESS)
                ev = evaluate(account, view.state, sig, pool_entry.op.call_data, kept, facts)
            except (ValueError, SessionViolation) as v:
                if self._drop(e.op_hash, f"the session {signer} was granted anew and the op no longer passes "
                                         f"its policy: {v}", ValidationRejected.code):
                    self.stats["dropped_regranted"] += 1
                continue
            use = PendingUse(e.op_hash, pool_entry.op.nonce, ev.period_index, ev.consumed, ev.grant)
            e.use = use
            kept.append(use)

    # ------------------------------------------------------------ RPC

    async def _entry_point_of(self, account: str, header, ep: EntryPointVersion | None) -> tuple[str, EntryPointVersion | None, bytes]:
        code = await self.rpc.get_code(account, hex(header.number))
        if not code:
            return "counterfactual", ep, code
        impl = implementation_of(code)
        known = self.contracts.entry_point_of(impl)
        if known is None:
            raise InvalidParams(f"{account} is not a SessionAccount known to this bundler (its code is not a clone of, "
                                f"or an EIP-7702 delegation to, a known SessionAccount implementation)")
        if ep is not None and ep is not known:
            raise InvalidParams(f"{account} is a SessionAccount of EntryPoint v{known.version}, not v{ep.version}")
        return ("clone" if len(code) == 45 else "eip7702"), known, code

    async def session_info(self, account: str, signer: str, ep: EntryPointVersion | None = None) -> SessionReport:
        header = await self.head.fresh()
        now = chain_now(header)
        kind, ep, _code = await self._entry_point_of(account, header, ep)
        state = SessionState()
        if ep is not None and kind != "counterfactual":
            view = await self.reader.read(ep, account, signer, 0, header)
            if view.state_error is not None:
                raise BundlerError(f"could not read the session state of {account}: {view.state_error}")
            state = view.state
        count, pending = self.ledger.totals(account, signer)
        spec = state.spec
        used = state.usage_count if spec is not None else 0
        current = None
        if spec is not None and spec.period:
            current = (now - spec.valid_after) // spec.period if now >= spec.valid_after else 0
        return SessionReport(
            account=account, session_key=signer, entry_point=ep.address if ep else None, account_type=kind,
            block_number=header.number, now=now, status=status_of(state, now), grant_nonce=state.grant_nonce,
            spec=spec, uses_used=used, uses_pending=count,
            uses_remaining=max(spec.usage_limit - used - count, 0) if spec is not None and spec.usage_limit else None,
            current_period=current, limits=limit_uses(state, now, pending),
            pending_ops=[e.op_hash for e in self.ledger.entries(account, signer)],
        )

    async def activity(self, account: str, signer: str) -> list[ActivityItem]:
        """The audit log of one session key: every op it sent through this bundler, oldest
        first, with its decoded calls, what its validation consumed, and its record now."""
        return [ActivityItem(a, self.store.get(a.op_hash)) for a in self.store.session_activity(account, signer)]
