"""The relay's HTTP API under /relay/v1 (JSON in, JSON out; docs/relay.md, and the OpenAPI
document at /relay/v1/openapi.json). Handlers parse, authenticate and call the service; every
failure is a JSON error object {error: {code, message, data?}} with an HTTP status."""
from __future__ import annotations

import json
import logging
from typing import Awaitable, Callable

from aiohttp import web

from ..errors import InvalidParams
from .errors import InvalidRequest, RelayError
from .metrics import RelayMetrics
from .openapi import openapi_document
from .service import Principal, RelayService

log = logging.getLogger(__name__)

PREFIX = "/relay/v1"


def _json(status: int, payload) -> web.Response:
    return web.json_response(payload, status=status, dumps=lambda o: json.dumps(o, separators=(",", ":")))


def _body(raw: bytes):
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("body is not valid JSON") from None


Handler = Callable[[web.Request, bytes], Awaitable[tuple[int, object]]]


def _endpoint(handler: Handler, route: str, metrics: RelayMetrics | None, rate_limiter=None):
    async def answer(request: web.Request) -> web.Response:
        if rate_limiter is not None:  # the same per-client budget as the JSON-RPC endpoint
            wait = await rate_limiter.allow(request, 1)
            if wait is not None:
                return web.json_response({"error": {"code": "rate_limited", "message": "rate limit exceeded"}},
                                         status=429, headers={"Retry-After": rate_limiter.retry_after(wait)})
        try:
            raw = await request.read()
            status, payload = await handler(request, raw)
            return _json(status, payload)
        except web.HTTPRequestEntityTooLarge:
            return _json(413, {"error": {"code": "too_large", "message": "request body too large"}})
        except RelayError as e:
            return _json(e.status, e.to_json())
        except InvalidParams as e:  # a malformed field, found by the shared parsers
            return _json(400, {"error": {"code": "invalid_request", "message": e.message}})
        except Exception as e:  # a bug of ours: say so, keep serving
            log.exception("relay: internal error in %s %s", request.method, request.path)
            return _json(500, {"error": {"code": "internal", "message": f"internal error: {type(e).__name__}"}})

    async def wrapped(request: web.Request) -> web.Response:
        response = await answer(request)
        if metrics is not None:
            metrics.request(route, response.status)
        return response

    return wrapped


def add_routes(app: web.Application, relay: RelayService | None, metrics: RelayMetrics | None = None,
               rate_limiter=None) -> None:
    """`rate_limiter`: rpc.ratelimit.ClientRateLimiter (the bundler's), or None. `relay` None builds the
    route table only (its paths, for the OpenAPI check): every route then answers 503."""
    def service() -> RelayService:
        if relay is None:
            raise RelayError("the relay is not running in this process", code="unavailable", status=503)
        return relay

    async def auth(request: web.Request, raw: bytes, **kw: bool) -> Principal:
        return await service().authenticate(request.method, request.raw_path, request.headers, raw, **kw)

    async def register(request: web.Request, raw: bytes) -> tuple[int, object]:
        signer = service().register_signer(request.method, request.raw_path, request.headers, raw)
        return 201, service().register(signer, _body(raw))

    async def me(request: web.Request, raw: bytes) -> tuple[int, object]:
        return 200, service().credential(await auth(request, raw))

    async def retire(request: web.Request, raw: bytes) -> tuple[int, object]:
        return 200, service().retire(await auth(request, raw))

    async def prepare(request: web.Request, raw: bytes) -> tuple[int, object]:
        p = await auth(request, raw, allow_owner=True)
        return 201, await service().prepare(p, _body(raw))

    async def list_grants(request: web.Request, raw: bytes) -> tuple[int, object]:
        return 200, service().grants(await auth(request, raw, allow_owner=True))

    async def get_grant(request: web.Request, raw: bytes) -> tuple[int, object]:
        return 200, service().grant(await auth(request, raw, allow_owner=True), request.match_info["grant_id"])

    async def activate(request: web.Request, raw: bytes) -> tuple[int, object]:
        return 200, await service().activate(request.match_info["grant_id"], _body(raw))

    async def revocation(request: web.Request, raw: bytes) -> tuple[int, object]:
        p = await auth(request, raw, allow_owner=True)
        return 200, await service().revocation(p, request.match_info["grant_id"])

    async def revoke(request: web.Request, raw: bytes) -> tuple[int, object]:
        p = await auth(request, raw, allow_owner=True)
        return 200, await service().revoke(p, request.match_info["grant_id"], _body(raw))

    async def execute(request: web.Request, raw: bytes) -> tuple[int, object]:
        return await service().execute(await auth(request, raw), _body(raw))

    async def get_call(request: web.Request, raw: bytes) -> tuple[int, object]:
        return 200, service().call(await auth(request, raw, allow_owner=True), request.match_info["call_id"])

    async def audit(request: web.Request, raw: bytes) -> tuple[int, object]:
        return 200, service().audit(await auth(request, raw, allow_owner=True))

    async def info(request: web.Request, raw: bytes) -> tuple[int, object]:
        return 200, service().info()

    async def openapi(request: web.Request, raw: bytes) -> tuple[int, object]:
        return 200, openapi_document()

    r = app.router
    r.add_post(f"{PREFIX}/credentials", _endpoint(register, "POST /credentials", metrics, rate_limiter))
    r.add_get(f"{PREFIX}/credentials/me", _endpoint(me, "GET /credentials/me", metrics, rate_limiter))
    r.add_post(f"{PREFIX}/credentials/me/retire", _endpoint(retire, "POST /credentials/me/retire", metrics, rate_limiter))
    r.add_post(f"{PREFIX}/grants", _endpoint(prepare, "POST /grants", metrics, rate_limiter))
    r.add_get(f"{PREFIX}/grants", _endpoint(list_grants, "GET /grants", metrics, rate_limiter))
    r.add_get(f"{PREFIX}/grants/{{grant_id}}", _endpoint(get_grant, "GET /grants/{grant_id}", metrics, rate_limiter))
    r.add_post(f"{PREFIX}/grants/{{grant_id}}/activate", _endpoint(activate, "POST /grants/{grant_id}/activate", metrics, rate_limiter))
    r.add_get(f"{PREFIX}/grants/{{grant_id}}/revocation", _endpoint(revocation, "GET /grants/{grant_id}/revocation", metrics, rate_limiter))
    r.add_post(f"{PREFIX}/grants/{{grant_id}}/revoke", _endpoint(revoke, "POST /grants/{grant_id}/revoke", metrics, rate_limiter))
    r.add_post(f"{PREFIX}/calls", _endpoint(execute, "POST /calls", metrics, rate_limiter))
    r.add_get(f"{PREFIX}/calls/{{call_id}}", _endpoint(get_call, "GET /calls/{call_id}", metrics, rate_limiter))
    r.add_get(f"{PREFIX}/audit", _endpoint(audit, "GET /audit", metrics, rate_limiter))
    r.add_get(f"{PREFIX}/info", _endpoint(info, "GET /info", metrics, rate_limiter))
    r.add_get(f"{PREFIX}/openapi.json", _endpoint(openapi, "GET /openapi.json", metrics, rate_limiter))
