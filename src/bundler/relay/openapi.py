"""The relay's OpenAPI 3.1 document, served at /relay/v1/openapi.json (a test checks that every
route the app registers under /relay/v1 is described here, and nothing else)."""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from .auth import HEADER_CREDENTIAL, HEADER_NONCE, HEADER_OWNER, HEADER_SIGNATURE, HEADER_TIMESTAMP, SCHEME

_SIGNED: list[dict[str, list[str]]] = [{"credentialSignature": []}]
_SIGNED_OR_OWNER: list[dict[str, list[str]]] = [{"credentialSignature": []}, {"ownerSignature": []}]


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _answer(schema: dict, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "400": _answer(_ref("Error"), "malformed request (the message names the field)"),
    "401": _answer(_ref("Error"), "unsigned, wrongly signed, replayed or stale request; retired credential"),
    "403": _answer(_ref("Error"), "the signer may not do this"),
    "404": _answer(_ref("Error"), "unknown, or belongs to another tenant"),
}


def _op(summary: str, *, security=None, body: str | None = None, answers: dict | None = None,
        params: list | None = None) -> dict:
    out: dict[str, Any] = {"summary": summary, "responses": {**(answers or {"200": _answer({"type": "object"})}),
                                                             **_ERRORS}}
    out["security"] = security if security is not None else []
    if body:
        out["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
    if params:
        out["parameters"] = params
    return out


def _path_param(name: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


_QUANTITY = {"oneOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": "^(0x[0-9a-fA-F]+|[0-9]+)$"}]}
_ADDRESS = {"type": "string", "pattern": "^0x[0-9a-fA-F]{40}$"}
_LIMIT = {"type": "object", "properties": {"kind": {"enum": ["none", "lifetime", "allowance"]}, "amount": _QUANTITY}}


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    grant_id = [_path_param("grant_id")]
    return {
        "openapi": "3.1.0",
        "info": {"title": "bundler session relay", "version": "1",
                 "description": "Backends act for smart accounts through session keys held by this server. "
                                f"Every request is signed ({SCHEME}): see docs/relay.md."},
        "paths": {
            "/relay/v1/credentials": {"post": _op(
                "Register a backend's own key (the request is signed by that key)", body="RegisterCredential",
                answers={"201": _answer(_ref("Credential"), "registered")})},
            "/relay/v1/credentials/me": {"get": _op("The signing credential", security=_SIGNED,
                                                    answers={"200": _answer(_ref("Credential"))})},
            "/relay/v1/credentials/me/retire": {"post": _op(
                "Retire the credential: every grant it holds ends, keys destroyed, queued calls dropped",
                security=_SIGNED, answers={"200": _answer(_ref("Credential"))})},
            "/relay/v1/grants": {
                "post": _op("Prepare access (a fresh session key) for a credential on an account; returns what the "
                            "owner signs", security=_SIGNED_OR_OWNER, body="PrepareGrant",
                            answers={"201": _answer(_ref("Grant"), "prepared")}),
                "get": _op("The signer's grants (a credential's, or an owner's account's)", security=_SIGNED_OR_OWNER,
                           answers={"200": _answer({"type": "array", "items": _ref("Grant")})}),
            },
            "/relay/v1/grants/{grant_id}": {"get": _op("One grant", security=_SIGNED_OR_OWNER, params=grant_id,
                                                       answers={"200": _answer(_ref("Grant"))})},
            "/relay/v1/grants/{grant_id}/activate": {"post": _op(
                "The owner's signature (EIP-712 enable data, or the grant op's userOpHash) activates the grant; "
                "the signature is the authentication", body="Activate", params=grant_id,
                answers={"200": _answer(_ref("Grant")), "409": _answer(_ref("Error"), "not in state prepared"),
                         "422": _answer(_ref("Error"), "the pool refused the grant op")})},
            "/relay/v1/grants/{grant_id}/revocation": {"get": _op(
                "The on-chain revocation for the owner to send: a transaction to the account, or an owner op",
                security=_SIGNED_OR_OWNER, params=grant_id, answers={"200": _answer(_ref("Revocation"))})},
            "/relay/v1/grants/{grant_id}/revoke": {"post": _op(
                "End the grant now: key destroyed, queued and pending calls dropped; with ownerOp the signed "
                "revocation op is submitted too", security=_SIGNED_OR_OWNER, params=grant_id, body="Revoke",
                answers={"200": _answer(_ref("Grant"))})},
            "/relay/v1/calls": {"post": _op(
                "Execute calls for an account that authorised the credential", security=_SIGNED, body="Execute",
                answers={"202": _answer(_ref("Call"), "accepted: queued or pending"),
                         "200": _answer(_ref("Call"), "the idempotency key was used: the first call, as it is now"),
                         "422": _answer(_ref("Error"), "refused by the session policy or the pool: error.code is "
                                                       "the JSON-RPC code, error.data the RPC's data (rule, limit, "
                                                       "used, pending, requested, ...) plus callId")})},
            "/relay/v1/calls/{call_id}": {"get": _op("A call's status", security=_SIGNED_OR_OWNER,
                                                     params=[_path_param("call_id")],
                                                     answers={"200": _answer(_ref("Call"))})},
            "/relay/v1/audit": {"get": _op("The signer's audit trail, oldest first", security=_SIGNED_OR_OWNER,
                                           answers={"200": _answer({"type": "array", "items": _ref("AuditEvent")})})},
            "/relay/v1/info": {"get": _op("Chain, EntryPoints, the webhook signer's address")},
            "/relay/v1/openapi.json": {"get": _op("This document")},
        },
        "components": {
            "securitySchemes": {
                "credentialSignature": {
                    "type": "apiKey", "in": "header", "name": HEADER_SIGNATURE,
                    "description": f"{HEADER_CREDENTIAL}, {HEADER_TIMESTAMP}, {HEADER_NONCE} and {HEADER_SIGNATURE}: "
                                   "personal_sign by the credential's key of "
                                   f"'{SCHEME}\\nMETHOD\\nPATH\\nTIMESTAMP\\nNONCE\\nSHA256(body) hex'"},
                "ownerSignature": {
                    "type": "apiKey", "in": "header", "name": HEADER_SIGNATURE,
                    "description": f"{HEADER_OWNER} (the account) instead of {HEADER_CREDENTIAL}; signed by the "
                                   "account's on-chain owner key"},
            },
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                    "type": "object", "required": ["code", "message"],
                    "properties": {"code": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
                                   "message": {"type": "string"}, "data": {}}}}},
                "RegisterCredential": {"type": "object", "required": ["address"], "properties": {
                    "address": _ADDRESS, "name": {"type": "string"}, "webhookUrl": {"type": "string"}}},
                "Credential": {"type": "object", "properties": {
                    "credentialId": {"type": "string"}, "address": _ADDRESS, "name": {"type": "string"},
                    "webhookUrl": {"type": ["string", "null"]}, "status": {"enum": ["active", "retired"]},
                    "createdAt": {"type": "integer"}, "retiredAt": {"type": ["integer", "null"]}}},
                "Permissions": {"type": "object", "properties": {
                    "validAfter": {"type": "integer"}, "validUntil": {"type": "integer"},
                    "expiresIn": {"type": "integer", "description": "seconds from now (instead of validUntil)"},
                    "usageLimit": {"type": "integer"}, "period": {"type": "integer"},
                    "anyTarget": {"type": "object", "properties": {"maxValuePerUse": _QUANTITY, "valueLimit": _LIMIT}},
                    "calls": {"type": "array", "items": {"type": "object", "properties": {
                        "target": _ADDRESS, "function": {"type": "string"}, "selector": {"type": "string"},
                        "maxValuePerUse": _QUANTITY, "valueLimit": _LIMIT,
                        "constraints": {"type": "array", "items": {"type": "object", "properties": {
                            "condition": {"enum": ["eq", "neq", "gt", "gte", "lt", "lte"]},
                            "index": {"type": "integer"}, "value": {}, "limit": _LIMIT}}}}}},
                    "transfers": {"type": "array", "items": {"type": "object", "properties": {
                        "target": _ADDRESS, "maxValuePerUse": _QUANTITY, "valueLimit": _LIMIT}}},
                    "gasBudget": _QUANTITY}},
                "PrepareGrant": {"type": "object", "required": ["account", "permissions"], "properties": {
                    "account": _ADDRESS, "credentialId": {"type": "string"},
                    "mode": {"enum": ["enable", "ownerOp"]}, "permissions": _ref("Permissions")}},
                "Grant": {"type": "object", "properties": {
                    "grantId": {"type": "string"}, "credentialId": {"type": "string"}, "account": _ADDRESS,
                    "entryPoint": _ADDRESS,
                    "sessionKey": {**_ADDRESS, "description": "the session key's address (its private key never "
                                                              "leaves the server)"},
                    "mode": {"enum": ["enable", "ownerOp"]},
                    "status": {"enum": ["prepared", "authorized", "activating", "active", "revoked", "retired",
                                        "failed"]},
                    "spec": {"type": "object"}, "enable": {"type": "object", "properties": {
                        "typedData": {"type": "object"}, "digest": {"type": "string"}}},
                    "ownerOp": {"type": "object", "properties": {"userOp": {"type": "object"},
                                                                 "userOpHash": {"type": "string"}}},
                    "keyDestroyed": {"type": "boolean"}}},
                "Activate": {"type": "object", "required": ["signature"], "properties": {
                    "signature": {"type": "string", "description": "65 bytes r‖s‖v over the raw digest"}}},
                "Revocation": {"type": "object", "properties": {
                    "transaction": {"type": "object"}, "ownerOp": {"type": "object"}}},
                "Revoke": {"type": "object", "properties": {"ownerOp": {"type": "object", "properties": {
                    "userOp": {"type": "object"}, "signature": {"type": "string"}}}}},
                "Execute": {"type": "object", "required": ["account", "calls", "idempotencyKey"], "properties": {
                    "account": _ADDRESS, "idempotencyKey": {"type": "string"},
                    "calls": {"type": "array", "items": {"type": "object", "required": ["to"], "properties": {
                        "to": _ADDRESS, "value": _QUANTITY, "data": {"type": "string"}}}}}},
                "Call": {"type": "object", "properties": {
                    "callId": {"type": "string"}, "status": {"enum": ["queued", "pending", "mined", "dropped"]},
                    "userOpHash": {"type": ["string", "null"]}, "lane": {"type": ["integer", "null"]},
                    "receipt": {"type": "object", "description": "eth_getUserOperationReceipt, once mined"},
                    "reason": {"type": "string"}, "error": {"type": "object"}}},
                "AuditEvent": {"type": "object", "properties": {
                    "id": {"type": "integer"}, "at": {"type": "integer"}, "event": {"type": "string"},
                    "credentialId": {"type": ["string", "null"]}, "account": {"type": ["string", "null"]},
                    "grantId": {"type": ["string", "null"]}, "detail": {"type": "object"}}},
            },
        },
    }
