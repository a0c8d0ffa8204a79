"""Records <-> table rows, shared by the SQL stores. Ops are kept in their ERC-7769 JSON form
(what clients sent), quantities that may exceed 64 bits as decimal text."""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Iterable, Sequence

import msgspec
import orjson

from ..userop.codec import decode_user_operation_json, format_user_operation
from ..userop.model import UserOperation
from .records import InflightTx, OpRecord, OpStatus, ReputationRow, SessionActivity, Sponsorship, SponsorshipState, TxAttempt

OP_COLUMNS = (
    "hash", "entry_point", "sender", "nonce", "op", "status", "reason", "error_code", "tx_hash",
    "block_number", "block_hash", "valid_after", "valid_until", "prefund", "eip7702_delegate",
    "received_at", "updated_at",
)

def op_to_json(op: UserOperation) -> str:
    return orjson.dumps(format_user_operation(op)).decode()


def op_from_json(text: str | bytes) -> UserOperation:
    return decode_user_operation_json(text)


def op_row(r: OpRecord, op_json: str) -> tuple:
    return (
        r.hash, r.entry_point, r.op.sender, str(r.op.nonce), op_json, r.status.value, r.reason,
        r.error_code, r.tx_hash, r.block_number, r.block_hash, r.valid_after, r.valid_until,
        str(r.prefund), r.eip7702_delegate, r.received_at, r.updated_at,
    )


def op_from_row(row: Sequence[Any]) -> OpRecord:
    (h, entry_point, _sender, _nonce, op_json, status, reason, error_code, tx_hash, block_number,
     block_hash, valid_after, valid_until, prefund, delegate, received_at, updated_at) = row
    return OpRecord(
        hash=h, entry_point=entry_point, op=op_from_json(op_json), status=OpStatus(status),
        reason=reason, error_code=error_code, tx_hash=tx_hash, block_number=block_number,
        block_hash=block_hash, updated_at=updated_at, valid_after=valid_after or 0,
        valid_until=valid_until or 0, prefund=int(prefund or 0), eip7702_delegate=delegate,
        received_at=received_at,
    )


def reputation_row(r: ReputationRow) -> tuple:
    return (r.address, r.ops_seen, r.ops_included, r.updated_at)


def reputation_from_row(row: Sequence[Any]) -> ReputationRow:
    return ReputationRow(address=row[0], ops_seen=row[1], ops_included=row[2], updated_at=row[3])


def inflight_row(t: InflightTx) -> tuple:
    attempts = [{"txHash": a.tx_hash, "raw": a.raw, "maxFee": str(a.max_fee), "priority": str(a.priority),
                 "sentAt": a.sent_at} for a in t.attempts]
    return (t.executor, t.nonce, t.entry_point, orjson.dumps(t.op_hashes).decode(),
            orjson.dumps(attempts).decode(), t.created_at)


def inflight_from_row(row: Sequence[Any]) -> InflightTx:
    executor, nonce, entry_point, op_hashes, attempts, created_at = row
    return InflightTx(
        executor=executor, nonce=int(nonce), entry_point=entry_point, op_hashes=list(orjson.loads(op_hashes)),
        attempts=[TxAttempt(tx_hash=a["txHash"], raw=a["raw"], max_fee=int(a["maxFee"]),
                            priority=int(a["priority"]), sent_at=a["sentAt"]) for a in orjson.loads(attempts)],
        created_at=created_at,
    )


def session_activity_row(a: SessionActivity) -> tuple:
    # msgspec: the amounts can exceed 64 bits, which orjson refuses; msgspec writes any int
    # (2.5 us against stdlib json's 17 us per admitted session op). The fields are plain JSON
    # values already: the instance's own dict serialises the same as asdict()'s deep copy
    return (a.op_hash, a.account, a.session_key, _encode_json(_fields(a)).decode(), a.received_at)


def _fields(a: SessionActivity) -> dict:
    return {f: getattr(a, f) for f in _ACTIVITY_FIELDS}


_encode_json = msgspec.json.Encoder().encode
_ACTIVITY_FIELDS = tuple(f.name for f in dataclasses.fields(SessionActivity))


def session_activity_from_body(body: str) -> SessionActivity:
    return SessionActivity(**json.loads(body))


def merge_session_activity(bodies: Iterable[Any], recent: Iterable[SessionActivity]) -> list[SessionActivity]:
    """A session's log: rows read back (`bodies`) plus entries not committed yet (`recent`,
    already filtered to that session), one per op hash, oldest first."""
    merged = {a.op_hash: a for a in (session_activity_from_body(b) for b in bodies)}
    for a in recent:
        merged[a.op_hash] = a
    return sorted(merged.values(), key=lambda a: a.received_at)


SPONSORSHIP_COLUMNS = ("op_hash", "policy_id", "sender", "entry_point", "period_start", "amount", "valid_until",
                       "state", "from_block", "created_at")


def sponsorship_row(s: Sponsorship) -> tuple:
    # amounts as decimal text: wei can exceed 64 bits
    return (s.op_hash, s.policy_id, s.sender, s.entry_point, s.period_start, str(s.amount), s.valid_until,
            s.state.value, s.from_block, s.created_at)


def sponsorship_from_row(row: Sequence[Any]) -> Sponsorship:
    op_hash, policy_id, sender, entry_point, period_start, amount, valid_until, state, from_block, created_at = row
    return Sponsorship(op_hash=op_hash, policy_id=policy_id, sender=sender, entry_point=entry_point,
                       period_start=int(period_start), amount=int(amount), valid_until=int(valid_until),
                       state=SponsorshipState(state), from_block=int(from_block), created_at=float(created_at))
