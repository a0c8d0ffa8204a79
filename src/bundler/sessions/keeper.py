"""Keeps the pending-usage ledger in step with the mempool on every path that puts an op in it.

Admission evaluates a session op and records what it consumes twice: in the ledger (memory) and
in the session audit log of the store (SessionActivity, written before the op is acknowledged).
Every other way into the pool — the pending and in-flight ops reloaded after a restart, ops put
back after a reorg or after their bundle's nonce went to another transaction, ops another
instance admitted into a shared store — ends in Mempool.add, which tells this observer; an op
the ledger does not hold is entered again from its activity record, so it counts against its
session's limits exactly as it did at admission, shows in session_getSession, and is dropped
when its session is revoked or expires.

The recorded amounts stay right across those paths: what an op consumes follows from its
callData, its allowance period (named in its signature) and the spec it ran under; a new grant
of the session re-evaluates the pending ops (SessionService._revalidate).
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable

from session_sdk.events import Consumption
from session_sdk.types import UINT48_MAX
from session_sdk.signatures import MODE_ENABLE, MODE_SESSION, EnableSignature

from .ports import SessionActivityReader
from .ledger import LedgerEntry, SessionLedger
from .policy import PendingUse, decode_session_signature

if TYPE_CHECKING:
    from ..pool.mempool import PoolEntry

log = logging.getLogger(__name__)


def use_from_activity(activity, op_hash: str, nonce: int, grant) -> PendingUse:
    """The ledger's view of an op from its SessionActivity record."""
    consumed = tuple(Consumption(c["scope"], c["policyIndex"], c["constraintIndex"], c["amount"])
                     for c in activity.consumed)
    return PendingUse(op_hash, nonce, activity.period_index, consumed, grant)


class LedgerKeeper:
    """Mempool observer (pool.mempool.PoolObserver) owning the ledger's updates."""

    def __init__(self, ledger: SessionLedger, store: SessionActivityReader, enabled: Callable[[], bool] = lambda: True):
        self.ledger = ledger
        self.store = store
        self.enabled = enabled  # no session contracts known: nothing to account
        self.restored = 0  # ops entered again from their activity record (for tests and logs)

    def added(self, entry: PoolEntry) -> None:
        known = self.ledger.get(entry.hash)
        if known is not None:  # admission entered it just before; or mined, and back after a reorg
            self.ledger.unmined(entry.hash)
            return
        sig_bytes = entry.op.signature
        if not self.enabled() or not sig_bytes or sig_bytes[0] not in (MODE_SESSION, MODE_ENABLE):
            return
        try:
            sig = decode_session_signature(sig_bytes)
        except ValueError:
            return  # not a session signature (another account's format)
        account, signer = entry.op.sender.lower(), sig.signer.lower()
        activity = next((a for a in self.store.session_activity(account, signer) if a.op_hash == entry.hash), None)
        if activity is None:
            # never admitted as a session op here (its account was not recognised), or its log
            # entry was pruned: the bundle simulation still guards it
            log.debug("op %s has a session signature but no session activity record", entry.hash)
            return
        grant = sig.spec if isinstance(sig, EnableSignature) else None
        use = use_from_activity(activity, entry.hash, entry.op.nonce, grant)
        valid_until = 0 if entry.valid_until >= UINT48_MAX else entry.valid_until
        self.ledger.add(LedgerEntry(use, account, signer, entry.entry_point.address, entry.valid_after, valid_until))
        self.restored += 1

    def removed(self, entry: PoolEntry, mined_block: int | None = None) -> None:
        self.ledger.removed(entry, mined_block)

    def cleared(self) -> None:
        self.ledger.cleared()
