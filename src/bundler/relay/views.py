"""JSON shapes of the relay's answers. The session key appears only as its address (the public
id the owner signs into the grant); the encrypted key never leaves the store."""
from __future__ import annotations

import json
from typing import Any

from eth_utils import to_checksum_address

from session_sdk.types import decode_spec
from session_sdk.eip712 import eip712_spec_digest, eip712_typed_data
from ..rpc.results import encode_session_spec
from ..store.relay import DISPATCHING, QUEUED, AuditEvent, Credential, Grant, RelayCall


def credential_view(c: Credential) -> dict[str, Any]:
    return {"credentialId": c.id, "address": to_checksum_address(c.address), "name": c.name,
            "webhookUrl": c.webhook_url, "status": c.status, "createdAt": int(c.created_at),
            "retiredAt": int(c.retired_at) if c.retired_at else None}


def grant_view(g: Grant, chain_id: int) -> dict[str, Any]:
    spec = decode_spec(bytes.fromhex(g.spec))
    out: dict[str, Any] = {
        "grantId": g.id, "credentialId": g.credential_id, "account": to_checksum_address(g.account),
        "entryPoint": to_checksum_address(g.entry_point), "sessionKey": to_checksum_address(g.session_address),
        "mode": g.mode, "status": g.status, "reason": g.reason, "grantNonce": g.grant_nonce, "epoch": g.epoch,
        "spec": encode_session_spec(spec), "permissions": json.loads(g.permissions),
        "activationOp": g.activation_op, "keyDestroyed": g.encrypted_key is None,
        "createdAt": int(g.created_at), "updatedAt": int(g.updated_at),
    }
    if g.status == "prepared":
        if g.mode == "enable":
            out["enable"] = {
                "typedData": eip712_typed_data(spec, g.grant_nonce, g.account, chain_id, g.epoch),
                "digest": "0x" + eip712_spec_digest(spec, g.grant_nonce, g.account, chain_id, g.epoch).hex(),
            }
        elif g.owner_op:
            out["ownerOp"] = json.loads(g.owner_op)
    return out


def call_view(c: RelayCall) -> dict[str, Any]:
    out: dict[str, Any] = {
        "callId": c.id, "idempotencyKey": c.idempotency_key, "grantId": c.grant_id,
        "account": to_checksum_address(c.account), "calls": json.loads(c.calls),
        "status": QUEUED if c.status == DISPATCHING else c.status,
        "userOpHash": c.user_op_hash, "lane": c.lane, "nonce": c.nonce,
        "createdAt": int(c.created_at), "updatedAt": int(c.updated_at),
    }
    if c.error:
        err = json.loads(c.error)
        out["error"] = err
        out["reason"] = err.get("message")
    if c.receipt:
        out["receipt"] = json.loads(c.receipt)
    return out


def audit_view(e: AuditEvent) -> dict[str, Any]:
    return {"id": e.id, "at": int(e.at), "event": e.event, "credentialId": e.credential_id,
            "account": to_checksum_address(e.account) if e.account else None, "grantId": e.grant_id,
            "detail": e.detail}
