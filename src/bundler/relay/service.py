"""The relay: backends act for accounts through session keys this server holds.

    register(address)                 a backend's own key -> credential id
    prepare(credential, account, permissions, mode)
                                      fresh session key (encrypted at rest) -> what the owner signs
    activate(grant, owner signature)  enable mode: the next call's op carries the grant (mode 0x02);
                                      ownerOp mode: the signed grant op is submitted
    execute(credential, calls, idempotency key)
                                      op built in a nonce lane, estimated, signed, submitted in-process
    call status                       queued | pending | mined (+ receipt) | dropped (+ reason)
    revoke(grant) / retire(credential)
                                      key destroyed, queued and pending calls dropped, audit trail

A background task (run) follows every block: activation ops mined or dropped, queued calls
dispatched once their grant is active, pending calls finished from the pool's op status (with a
webhook), and SessionRevoked events of the accounts it serves (an owner revoking on chain).

Tenancy: a credential reaches only grants it holds; an owner (authenticated by the account's
on-chain owner key) reaches only grants of that account.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .metrics import RelayMetrics

from session_sdk.types import decode_spec, encode_spec
from session_sdk.eip712 import eip712_spec_digest
from session_sdk.signatures import encode_owner_signature
from session_sdk.calldata import encode_grant_session, encode_revoke_session
from session_sdk.addresses import implementation_of
from session_sdk.events import TOPIC_SESSION_REVOKED

from ..entrypoint import EntryPointVersion, by_address
from ..errors import BundlerError, InvalidParams
from ..rpc.results import encode_receipt
from ..sessions.recover import recover_signer
from ..store import OpStatus
from ..store.relay import (
    DISPATCHING, DROPPED, FINAL_CALL_STATES, MINED, PENDING, QUEUED, Credential, DuplicateKey, Grant, RelayCall, RelayStore,
)
from ..userop.codec import decode_user_operation, format_user_operation, parse_address, parse_bytes, parse_quantity
from . import auth
from .errors import Conflict, Forbidden, InvalidRequest, NotFound, Refused, RelayError, Unauthorized
from .keystore import KeyDecryptError, KeyStore
from .ops import BundlerServices, CallSpec, Lanes, OpBuilder, account_epoch, instance_lane_base, owner_of
from .permissions import InvalidPermissions, to_spec
from .views import call_view, credential_view, grant_view
from .webhooks import AddressRefused, refuse_internal_literal

log = logging.getLogger(__name__)

LIVE_GRANT = ("prepared", "authorized", "activating", "active")
MAX_CALLS_PER_OP = 16
MAX_CALL_DATA = 64 * 1024
FRESH_GRANT_S = 60  # a grant active for less than this may not show in a lagging view of the chain yet
STALE_DISPATCH_S = 120  # a call claimed this long ago by a process that died goes back to the queue


@dataclass(frozen=True)
class Principal:
    """Who signed a request: a backend credential, or the owner of one account."""

    credential: Credential | None = None
    account: str | None = None
    signer: str = ""

    def own_credential(self) -> Credential:
        """The credential that signed a request only a credential may make (authenticate() without
        allow_owner gives no other principal; an owner's request is refused here all the same)."""
        if self.credential is None:
            raise Forbidden("only a credential may make this request, not an account owner")
        return self.credential


_Row = TypeVar("_Row")


def _grant_entry_point(g: Grant) -> EntryPointVersion:
    ep = by_address(g.entry_point)
    if ep is None:  # written by a bundler that knew this EntryPoint
        raise Conflict(f"grant {g.id} is for EntryPoint {g.entry_point}, which this bundler does not know")
    return ep


def _stored(row: _Row | None, kind: str, key: str) -> _Row:
    """A row read back (after this service wrote it, or named by a request): gone is NotFound."""
    if row is None:
        raise NotFound(f"no {kind} {key}")
    return row


def _new_id(prefix: str) -> str:
    return f"{prefix}_{os.urandom(12).hex()}"


def _signature(value: Any, name: str = "signature") -> bytes:
    sig = parse_bytes(value, name, 65)
    if len(sig) != 65:
        raise InvalidRequest(f"{name} must be 65 bytes (r ‖ s ‖ v)")
    return sig


def refusal(e: BundlerError) -> dict[str, Any]:
    """A pool error as the relay stores and returns it: the RPC's code, message and data."""
    out: dict[str, Any] = {"code": e.code, "message": e.message}
    if e.data is not None:
        out["data"] = e.data
    return out


class RelayService:
    def __init__(self, *, bundler: BundlerServices, lookup, sessions, store: RelayStore, keys: KeyStore, config,
                 webhooks=None, webhook_signer: str | None = None):
        self.bundler = bundler  # node, head, the pool (add, pending ops, op state), estimator
        self.lookup = lookup  # chain.lookup.UserOpLookup: receipts
        self.sessions = sessions  # sessions.service.SessionService
        self.store = store
        self.keys = keys
        self.config = config
        self.webhooks = webhooks  # relay.webhooks.Webhooks or None
        self.webhook_signer = webhook_signer
        self.metrics: RelayMetrics | None = None  # set by the Relay
        base = instance_lane_base(list(bundler.executor_addresses)) if bundler.shared_store else 0
        self.builder = OpBuilder(bundler, Lanes(config.relay_nonce_lanes, base))
        self._enabling: set[str] = set()  # grants whose enable op is being built
        self._last_block: int | None = None

    def info(self) -> dict[str, Any]:
        return {"chainId": self.bundler.chain_id,
                "entryPoints": [ep.address for ep in self.bundler.entry_points],
                "webhookSigner": self.webhook_signer, "signatureScheme": auth.SCHEME,
                "maxClockSkewSeconds": self.config.relay_max_clock_skew_s,
                "nonceLanes": self.builder.lanes.count}

    # ------------------------------------------------------------ authentication

    def _signed(self, method: str, path: str, headers, body: bytes) -> tuple[str, str, float]:
        """(signer, nonce, now) of a signed request with a fresh timestamp."""
        now = time.time()
        try:
            signer, nonce = auth.signer_of(method, path, headers, body, now, self.config.relay_max_clock_skew_s)
        except auth.AuthError as e:
            raise Unauthorized(str(e)) from None
        return signer, nonce, now

    def _first_use(self, principal_key: str, nonce: str, now: float) -> None:
        # a nonce is remembered as long as its timestamp could pass the skew check
        if not self.store.use_request_nonce(principal_key, nonce, now + 2 * self.config.relay_max_clock_skew_s):
            raise Unauthorized("replayed request: this nonce was used already")

    async def authenticate(self, method: str, path: str, headers, body: bytes, *,
                           allow_owner: bool = False, allow_credential: bool = True) -> Principal:
        signer, nonce, now = self._signed(method, path, headers, body)
        cred_id, owner_account = headers.get(auth.HEADER_CREDENTIAL), headers.get(auth.HEADER_OWNER)
        if cred_id is not None and allow_credential:
            cred = self.store.get_credential(cred_id)
            if cred is None or cred.address != signer:
                raise Unauthorized("bad signature for this credential, or unknown credential")
            if cred.status != "active":
                raise Unauthorized(f"credential {cred.id} is {cred.status}")
            principal = Principal(credential=cred, signer=signer)
            key = "cred:" + cred.id
        elif owner_account is not None and allow_owner:
            account = parse_address(owner_account, auth.HEADER_OWNER)
            owner = await owner_of(self.bundler.node, account)
            if owner is None or owner != signer:
                raise Unauthorized(f"the request is not signed by the owner of {account}")
            principal = Principal(account=account, signer=signer)
            key = "owner:" + account
        else:
            wanted = " or ".join(h for h, ok in ((auth.HEADER_CREDENTIAL, allow_credential),
                                                 (auth.HEADER_OWNER, allow_owner)) if ok)
            raise Unauthorized(f"say who signs: {wanted} header")
        self._first_use(key, nonce, now)
        return principal

    def register_signer(self, method: str, path: str, headers, body: bytes) -> str:
        """Registration is signed by the key being registered (proof of possession)."""
        signer, nonce, now = self._signed(method, path, headers, body)
        self._first_use("new:" + signer, nonce, now)
        return signer

    # ------------------------------------------------------------ credentials

    def register(self, signer: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise InvalidRequest("body must be a JSON object")
        address = parse_address(body.get("address"), "address")
        if address != signer:
            raise Unauthorized("the registration must be signed by the key being registered")
        name = body.get("name", "")
        if not isinstance(name, str) or len(name) > 200:
            raise InvalidRequest("name must be a string of at most 200 characters")
        webhook = body.get("webhookUrl")
        if webhook is not None and (not isinstance(webhook, str) or not webhook.startswith(("http://", "https://"))
                                    or len(webhook) > 2000):
            raise InvalidRequest("webhookUrl must be an http(s) URL")
        if webhook is not None and not self.config.relay_webhook_private_networks:
            try:
                refuse_internal_literal(webhook)
            except AddressRefused as e:
                raise InvalidRequest(f"webhookUrl: {e} (--relay-webhook-private-networks allows it)") from None
        cred = Credential(id=_new_id("cred"), address=address, name=name, webhook_url=webhook)
        self.store.add_credential(cred)
        self.store.audit("credential.registered", credential_id=cred.id, address=address, name=name)
        log.info("relay: credential %s registered for %s", cred.id, address)
        return credential_view(cred)

    def credential(self, p: Principal) -> dict[str, Any]:
        return credential_view(p.own_credential())

    def retire(self, p: Principal) -> dict[str, Any]:
        cred = p.own_credential()
        ended = []
        for g in self.store.grants(credential_id=cred.id, statuses=LIVE_GRANT):
            self._end_grant(g, "retired", f"credential {cred.id} was retired")
            ended.append(g.id)
        self.store.update_credential(cred.id, status="retired", retired_at=time.time())
        self.store.audit("credential.retired", credential_id=cred.id, grants=ended)
        log.info("relay: credential %s retired (%d grants ended)", cred.id, len(ended))
        return credential_view(_stored(self.store.get_credential(cred.id), "credential", cred.id))

    # ------------------------------------------------------------ grants

    async def _entry_point_of(self, account: str) -> EntryPointVersion:
        code = await self.bundler.node.get_code(account)
        if not code:
            raise InvalidRequest(f"account {account} has no code: deploy it first")
        ep = self.sessions.contracts.entry_point_of(implementation_of(code)) if self.sessions else None
        if ep is None or ep not in self.bundler.entry_points:
            raise InvalidRequest(f"{account} is not a SessionAccount served by this bundler")
        return ep

    async def prepare(self, p: Principal, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise InvalidRequest("body must be a JSON object")
        account = parse_address(body.get("account"), "account")
        cred_id = body.get("credentialId")
        cred: Credential | None
        if p.credential is not None:
            if cred_id not in (None, p.credential.id):
                raise Forbidden("a credential may ask access only for itself")
            cred = p.credential
        else:
            if p.account != account:
                raise Forbidden("an owner may grant access only to their own account")
            cred = self.store.get_credential(cred_id) if isinstance(cred_id, str) else None
            if cred is None or cred.status != "active":
                raise NotFound(f"no active credential {cred_id!r}")
        mode = body.get("mode", "enable")
        if mode not in ("enable", "ownerOp"):
            raise InvalidRequest("mode must be enable or ownerOp")
        ep = await self._entry_point_of(account)
        header = await self.bundler.head.fresh()
        # the chain's clock: a grant starting at the wall clock would make its first op wait for a
        # block at least that late (on a dev chain that mines only on demand: for ever)
        now = header.timestamp
        session_address, encrypted = self.keys.new_key()
        try:
            spec = to_spec(body.get("permissions"), session_address, now)
        except InvalidPermissions as e:
            raise InvalidRequest(f"permissions: {e}") from None
        grant = Grant(id=_new_id("grant"), credential_id=cred.id, account=account, entry_point=ep.address,
                      session_address=session_address, encrypted_key=encrypted, spec=encode_spec(spec).hex(),
                      permissions=json.dumps(body.get("permissions"), sort_keys=True), mode=mode,
                      status="prepared", grant_nonce=0,  # a fresh key: grantNonce(signer) is 0
                      epoch=await account_epoch(self.bundler.node, account))
        if mode == "ownerOp":
            op, op_hash = await self.builder.owner_op(ep, account, encode_grant_session(spec))
            grant.owner_op = json.dumps({"userOp": format_user_operation(op), "userOpHash": op_hash})
        self.store.add_grant(grant)
        self.store.audit("grant.prepared", credential_id=cred.id, account=account, grant_id=grant.id,
                         sessionKey=session_address, mode=mode, by="credential" if p.credential else "owner")
        log.info("relay: grant %s prepared for %s on %s (session %s)", grant.id, cred.id, account, session_address)
        return grant_view(grant, self.bundler.chain_id)

    def _grant_for(self, p: Principal, grant_id: str) -> Grant:
        g = self.store.get_grant(grant_id)
        # not found and not yours look the same: a tenant learns nothing about others' grants
        if g is None or (p.credential is not None and g.credential_id != p.credential.id) or \
                (p.account is not None and g.account != p.account):
            raise NotFound(f"no grant {grant_id}")
        return g

    def grant(self, p: Principal, grant_id: str) -> dict[str, Any]:
        return grant_view(self._grant_for(p, grant_id), self.bundler.chain_id)

    def grants(self, p: Principal) -> list[dict[str, Any]]:
        rows = self.store.grants(credential_id=p.credential.id) if p.credential else self.store.grants(account=p.account)
        return [grant_view(g, self.bundler.chain_id) for g in rows]

    async def activate(self, grant_id: str, body: Any) -> dict[str, Any]:
        """The owner's signature is the authentication: it must recover to the account's owner."""
        if not isinstance(body, dict):
            raise InvalidRequest("body must be a JSON object")
        sig = _signature(body.get("signature"))
        g = self.store.get_grant(grant_id)
        if g is None:
            raise NotFound(f"no grant {grant_id}")
        if g.status != "prepared":
            raise Conflict(f"grant {grant_id} is {g.status}, not prepared")
        owner = await owner_of(self.bundler.node, g.account)
        spec = decode_spec(bytes.fromhex(g.spec))
        if g.mode == "enable":
            digest = eip712_spec_digest(spec, g.grant_nonce, g.account, self.bundler.chain_id, g.epoch)
            if owner is None or recover_signer(digest, sig) != owner:
                raise Unauthorized(f"the signature is not the owner's EIP-712 signature of this grant "
                                   f"(owner {owner})")
            self.store.update_grant(g.id, status="authorized", owner_signature="0x" + sig.hex())
            self.store.audit("grant.authorized", credential_id=g.credential_id, account=g.account, grant_id=g.id,
                             mode="enable")
        else:
            if g.owner_op is None:
                raise Conflict(f"grant {g.id} is an ownerOp grant without its op")
            stored = json.loads(g.owner_op)
            if owner is None or recover_signer(bytes.fromhex(stored["userOpHash"][2:]), sig) != owner:
                raise Unauthorized(f"the signature is not the owner's signature of the grant op (owner {owner})")
            op = decode_user_operation({**stored["userOp"], "signature": "0x" + encode_owner_signature(sig).hex()})
            ep = _grant_entry_point(g)
            try:
                op_hash = await self.bundler.pool.add(op, ep)
            except BundlerError as e:
                raise Refused(e.message, e.data, code=e.code) from None
            self.store.update_grant(g.id, status="activating", activation_op=op_hash)
            self.store.audit("grant.authorized", credential_id=g.credential_id, account=g.account, grant_id=g.id,
                             mode="ownerOp", userOpHash=op_hash)
        log.info("relay: grant %s authorized by the owner of %s", g.id, g.account)
        return grant_view(_stored(self.store.get_grant(g.id), "grant", g.id), self.bundler.chain_id)

    async def revocation(self, p: Principal, grant_id: str) -> dict[str, Any]:
        """What the owner sends to revoke on chain: a transaction to the account, or an owner op."""
        g = self._grant_for(p, grant_id)
        data = encode_revoke_session(g.session_address)
        op, op_hash = await self.builder.owner_op(_grant_entry_point(g), g.account, data)
        return {"grantId": g.id, "sessionKey": g.session_address,
                "transaction": {"to": g.account, "data": "0x" + data.hex(), "value": "0x0"},
                "ownerOp": {"userOp": format_user_operation(op), "userOpHash": op_hash}}

    async def revoke(self, p: Principal, grant_id: str, body: Any) -> dict[str, Any]:
        """The owner's (or the grant's credential's) signed request: the key is destroyed and its
        calls dropped now. With `ownerOp` (the revocation op and the owner's signature of its
        hash) the relay also submits the on-chain revocation."""
        g = self._grant_for(p, grant_id)
        if g.status not in LIVE_GRANT:
            raise Conflict(f"grant {grant_id} is {g.status} already")
        submitted = None
        if isinstance(body, dict) and body.get("ownerOp") is not None:
            if p.account is None:
                raise Forbidden("only the owner submits a revocation op")
            signed = body["ownerOp"]
            if not isinstance(signed, dict) or not isinstance(signed.get("userOp"), dict):
                raise InvalidRequest("ownerOp must be {userOp, signature}")
            sig = _signature(signed.get("signature"), "ownerOp.signature")
            try:
                op = decode_user_operation({**signed["userOp"], "signature": "0x" +
                                            encode_owner_signature(sig).hex()})
            except InvalidParams as e:
                raise InvalidRequest(f"ownerOp.userOp: {e.message}") from None
            if op.sender != g.account or op.call_data != encode_revoke_session(g.session_address):
                raise InvalidRequest("ownerOp.userOp must be the revocation op of this grant")
            try:
                submitted = await self.bundler.pool.add(op, _grant_entry_point(g))
            except BundlerError as e:
                raise Refused(e.message, e.data, code=e.code) from None
        by = "owner" if p.account is not None else f"credential {g.credential_id}"
        self._end_grant(g, "revoked", f"revoked by the {by}" + (f" (op {submitted})" if submitted else ""))
        return grant_view(_stored(self.store.get_grant(g.id), "grant", g.id), self.bundler.chain_id) | {"revocationOp": submitted}

    def _end_grant(self, g: Grant, status: str, reason: str) -> None:
        """Destroy the key, drop the grant's queued calls and its ops still waiting in the pool."""
        self.store.update_grant(g.id, status=status, reason=reason, encrypted_key=None)
        dropped_ops = self.sessions.drop_session_ops(g.account, g.session_address, reason) if self.sessions else []
        for c in self.store.calls(statuses=(QUEUED, DISPATCHING, PENDING), grant_id=g.id):
            if c.status != PENDING or c.user_op_hash in dropped_ops:
                self._finish(c, DROPPED, error={"code": "grant_" + status, "message": reason})
        self.store.audit(f"grant.{status}", credential_id=g.credential_id, account=g.account, grant_id=g.id,
                         reason=reason, keyDestroyed=True, droppedOps=dropped_ops)
        log.info("relay: grant %s %s, session key destroyed: %s", g.id, status, reason)

    # ------------------------------------------------------------ calls

    def _parse_calls(self, body: dict) -> list[CallSpec]:
        calls = body.get("calls")
        if not isinstance(calls, list) or not calls:
            raise InvalidRequest("calls must be a non-empty array of {to, value, data}")
        if len(calls) > MAX_CALLS_PER_OP:
            raise InvalidRequest(f"at most {MAX_CALLS_PER_OP} calls per request")
        out = []
        for i, c in enumerate(calls):
            if not isinstance(c, dict):
                raise InvalidRequest(f"calls[{i}] must be an object {{to, value, data}}")
            out.append(CallSpec(parse_address(c.get("to"), f"calls[{i}].to"), parse_quantity(c.get("value", 0), f"calls[{i}].value"),
                                parse_bytes(c.get("data", "0x"), f"calls[{i}].data", MAX_CALL_DATA)))
        return out

    async def execute(self, p: Principal, body: Any) -> tuple[int, dict[str, Any]]:
        """(HTTP status, call view). A repeated idempotency key answers the first call as it is now."""
        if not isinstance(body, dict):
            raise InvalidRequest("body must be a JSON object")
        cred = p.own_credential()
        key = body.get("idempotencyKey")
        if not isinstance(key, str) or not 1 <= len(key) <= 200:
            raise InvalidRequest("idempotencyKey must be a string of 1 to 200 characters")
        known = self.store.call_by_idempotency_key(cred.id, key)
        if known is not None:
            return 200, call_view(known)
        account = parse_address(body.get("account"), "account")
        calls = self._parse_calls(body)
        grants = [g for g in self.store.grants(credential_id=cred.id, account=account, statuses=LIVE_GRANT)
                  if g.status != "prepared"]
        if not grants:
            raise Forbidden(f"credential {cred.id} holds no authorized grant for {account}")
        grant = grants[-1]  # the newest
        # stored already claimed by this instance (no other one dispatches it), with its audit
        # entry in the same transaction
        call = RelayCall(id=_new_id("call"), credential_id=cred.id, idempotency_key=key, grant_id=grant.id,
                         account=account, calls=json.dumps([{"to": c.to, "value": hex(c.value),
                                                             "data": "0x" + c.data.hex()} for c in calls]),
                         status=DISPATCHING)
        try:
            with self.store.transaction():
                self.store.add_call(call)
                self.store.audit("call.accepted", credential_id=cred.id, account=account, grant_id=grant.id,
                                 callId=call.id)
        except DuplicateKey:  # the same key raced in: answer with the first one
            return 200, call_view(_stored(self.store.call_by_idempotency_key(cred.id, key), "call with key", key))
        if self.metrics is not None:
            self.metrics.call("accepted")
        await self._dispatch_claimed(call)
        view = call_view(_stored(self.store.get_call(call.id), "call", call.id))
        err = view.get("error")
        if view["status"] == DROPPED and err and isinstance(err.get("code"), int):
            # refused by the pool: the RPC's own code and data (rule, limit, used, pending, ...)
            data = err.get("data") if isinstance(err.get("data"), dict) else {}
            raise Refused(err["message"], {**data, "callId": call.id}, code=err["code"])
        return 202, view

    def call(self, p: Principal, call_id: str) -> dict[str, Any]:
        c = self.store.get_call(call_id)
        if c is None or (p.credential is not None and c.credential_id != p.credential.id) or \
                (p.account is not None and c.account != p.account):
            raise NotFound(f"no call {call_id}")
        return call_view(c)

    async def _dispatch(self, call: RelayCall) -> None:
        """Try to put a queued call's op in the pool; it stays queued while its grant is being
        activated or the account's pending-op cap is reached. The call is claimed first, so
        several instances sharing the store never send it twice."""
        if not self.store.transition_call(call.id, (QUEUED,), status=DISPATCHING):
            return
        await self._dispatch_claimed(call)

    async def _dispatch_claimed(self, call: RelayCall) -> None:
        try:
            await self._dispatch_once(call)
        finally:
            self.store.transition_call(call.id, (DISPATCHING,), status=QUEUED)  # not sent: queued again

    async def _dispatch_once(self, call: RelayCall) -> None:
        g = self.store.get_grant(call.grant_id)
        if g is None or g.status not in ("authorized", "active") or g.encrypted_key is None:
            if g is None or g.status not in LIVE_GRANT:
                self._finish(call, DROPPED, error={"code": "grant_" + (g.status if g else "missing"),
                                                   "message": f"the grant is {g.status if g else 'gone'}"})
            return
        enable = None
        if g.status == "authorized":
            if g.activation_op is not None or g.id in self._enabling:
                return  # the enable op is in flight: wait for the grant to be on chain
            if g.owner_signature is None:  # "authorized" is written together with the owner's signature
                raise Conflict(f"grant {g.id} is authorized without the owner's signature")
            enable = (g.grant_nonce, bytes.fromhex(g.owner_signature[2:]))
        ep = _grant_entry_point(g)
        if self.builder.pending_count(g.account, ep) >= self.config.session_max_ops_per_sender:
            return
        try:
            key = self.keys.open(g.encrypted_key, g.session_address)
        except KeyDecryptError as e:
            self._finish(call, DROPPED, error={"code": "key_unavailable", "message": str(e)})
            return
        calls = [CallSpec(c["to"], int(c["value"], 16), bytes.fromhex(c["data"][2:])) for c in json.loads(call.calls)]
        spec = decode_spec(bytes.fromhex(g.spec))
        if enable is not None:  # only one op may carry the grant
            self._enabling.add(g.id)
        try:
            op_hash, lane, nonce = await self.builder.submit_session_op(
                ep=ep, account=g.account, calls=calls, key=key, spec=spec, enable=enable)
        except BundlerError as e:
            rule = e.data.get("rule") if isinstance(e.data, dict) else None
            if rule == "SessionUnknown" and g.status == "active" and time.time() - g.updated_at < FRESH_GRANT_S:
                # the grant's op is mined (another instance may have seen it first) but this
                # instance's view of the chain is a block behind: queued, retried next block
                log.info("relay: call %s waits for the grant %s to show on chain here", call.id, g.id)
                return
            self._finish(call, DROPPED, error=refusal(e), refused=True)
            self.store.audit("call.refused", credential_id=call.credential_id, account=call.account,
                             grant_id=g.id, callId=call.id, code=e.code, rule=(e.data or {}).get("rule")
                             if isinstance(e.data, dict) else None)
            return
        finally:
            del key
            self._enabling.discard(g.id)
        if enable is not None:
            self.store.update_grant(g.id, activation_op=op_hash, status="activating")
        if not self.store.transition_call(call.id, (DISPATCHING,), status=PENDING, user_op_hash=op_hash, lane=lane,
                                          nonce=hex(nonce)):
            # the grant ended while the op was being built: take it back out of the pool
            self.sessions.drop_session_ops(g.account, g.session_address, "the relay grant ended")
            return
        log.info("relay: call %s submitted as op %s (lane %d)", call.id, op_hash, lane)

    def _finish(self, call: RelayCall, status: str, *, error: dict | None = None, receipt: dict | None = None,
                refused: bool = False) -> None:
        """A final state, once: only the instance that moves the call there audits and notifies."""
        if not self.store.transition_call(call.id, (QUEUED, DISPATCHING, PENDING), status=status,
                                          error=json.dumps(error) if error else None,
                                          receipt=json.dumps(receipt) if receipt else None):
            return
        if status in FINAL_CALL_STATES:
            if self.metrics is not None:
                self.metrics.call("refused" if refused else status)
            self.store.audit(f"call.{status}", credential_id=call.credential_id, account=call.account,
                             grant_id=call.grant_id, callId=call.id, userOpHash=call.user_op_hash,
                             **({"reason": error.get("message")} if error else {}))
            if self.webhooks is not None:
                cred = self.store.get_credential(call.credential_id)
                if cred is not None and cred.webhook_url:
                    self.webhooks.deliver(cred, f"call.{status}",
                                          call_view(_stored(self.store.get_call(call.id), "call", call.id)))

    # ------------------------------------------------------------ following the chain

    async def run(self) -> None:
        while True:
            header = await self.bundler.head.wait_new_block(self._last_block, 1.0)
            try:
                await self.step(header.number if header is not None else None)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("relay step failed")
                await asyncio.sleep(0.5)

    async def step(self, block: int | None) -> None:
        await self._follow_revocations(block)
        self._follow_activations()
        for c in self.store.calls(statuses=(PENDING,)):
            await self._follow_call(c)
        for c in self.store.calls(statuses=(QUEUED,)):
            await self._dispatch(c)
        now = time.time()
        self.store.prune_request_nonces(now)
        self.store.requeue_stale_dispatching(now - STALE_DISPATCH_S)
        if block is not None:
            self._last_block = block

    def _follow_activations(self) -> None:
        for g in self.store.grants(statuses=("activating",)):
            record = self.bundler.pool.op_state(g.activation_op) if g.activation_op else None
            if record is None:
                continue
            if record.status == OpStatus.MINED:
                self.store.update_grant(g.id, status="active")
                self.store.audit("grant.active", credential_id=g.credential_id, account=g.account, grant_id=g.id,
                                 userOpHash=g.activation_op)
            elif record.status == OpStatus.DROPPED:
                # enable mode: the next call carries the grant again; ownerOp: the owner must sign anew
                nxt = ("authorized", None) if g.mode == "enable" else ("failed", None)
                self.store.update_grant(g.id, status=nxt[0], activation_op=nxt[1],
                                        reason=f"activation op dropped: {record.reason}")
                self.store.audit("grant.activation_dropped", credential_id=g.credential_id, account=g.account,
                                 grant_id=g.id, reason=record.reason)

    async def _follow_call(self, c: RelayCall) -> None:
        record = self.bundler.pool.op_state(c.user_op_hash) if c.user_op_hash else None
        if record is None or record.status in (OpStatus.PENDING, OpStatus.SUBMITTED):
            return
        if record.status == OpStatus.MINED:
            try:
                receipt = await self.lookup.receipt(c.user_op_hash)
            except BundlerError:
                receipt = None
            if receipt is None:
                return  # the node has not got it yet (or reorged): next block
            self._finish(c, MINED, receipt=encode_receipt(receipt))
        else:
            self._finish(c, DROPPED, error={"code": record.error_code, "message": record.reason or "dropped"})

    async def _follow_revocations(self, block: int | None) -> None:
        """An owner who revokes on chain (their own transaction or op) ends the grant here too."""
        if block is None:
            return
        live = self.store.grants(statuses=LIVE_GRANT)
        if not live:
            return
        start = block if self._last_block is None else self._last_block + 1
        if start > block:
            return
        by_key = {(g.account, g.session_address): g for g in live}
        logs = await self.bundler.node.get_logs({
            "address": sorted({g.account for g in live}),
            "topics": ["0x" + TOPIC_SESSION_REVOKED.hex()],
            "fromBlock": hex(start), "toBlock": hex(block),
        })
        for entry in logs or []:
            if entry.get("removed") or len(entry.get("topics", ())) < 2:
                continue
            g = by_key.get((entry["address"].lower(), "0x" + entry["topics"][1][-40:].lower()))
            now = self.store.get_grant(g.id) if g is not None else None
            if g is not None and now is not None and now.status in LIVE_GRANT:
                self._end_grant(g, "revoked", f"revoked on chain in block {int(entry['blockNumber'], 16)} "
                                              f"(tx {entry.get('transactionHash')})")
                by_key.pop((g.account, g.session_address), None)

    # ------------------------------------------------------------ audit

    def audit(self, p: Principal, limit: int = 1000) -> list[dict[str, Any]]:
        from .views import audit_view

        rows = (self.store.audit_events(credential_id=p.credential.id, limit=limit) if p.credential
                else self.store.audit_events(account=p.account, limit=limit))
        return [audit_view(e) for e in rows]


__all__ = ["Principal", "RelayError", "RelayService"]
