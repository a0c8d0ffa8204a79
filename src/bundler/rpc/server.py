"""aiohttp + pjrpc: JSON-RPC 2.0 over HTTP (batches included), with errors that always carry a
code and a message, whatever the caller sends."""
from __future__ import annotations

import asyncio
import functools
import json
import logging
from typing import Any, Awaitable, Callable

import orjson
import pjrpc
from aiohttp import web
from pjrpc.server import AsyncDispatcher, MethodRegistry
from pjrpc.server.exceptions import InvalidParamsError, JsonRpcError

from ..chain.client import NodeClient, NodeRpcError
from ..errors import BundlerError
from .ratelimit import RATE_LIMIT_CODE, ClientRateLimiter

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY = 1 << 20
DEFAULT_MAX_BATCH = 100


def _error_body(code: int, message: str) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}})


def _load_json(text: str, cls=None):
    # orjson refuses nesting deeper than 1024 by itself. The stdlib parser recurses on the C
    # stack, and py-evm raises the interpreter's recursion limit on import, so a deeply
    # nested body would crash the process instead of raising.
    return orjson.loads(text)


def _parse_batch(raw: bytes) -> list | None:
    """The members of a batch body (None when the body is not a JSON array)."""
    if not raw.lstrip().startswith(b"["):
        return None
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, list) else None


_BAD_MEMBER = _error_body(-32600, "invalid request: a batch member must be a JSON object")


async def _dispatch_member(dispatcher: AsyncDispatcher, member: Any, context) -> str | None:
    """One batch member's answer (JSON text), None for a notification."""
    if not isinstance(member, dict):
        return _BAD_MEMBER
    answer = await dispatcher.dispatch(orjson.dumps(member).decode(), context=context)
    return None if answer is None else answer[0]


def _make_middleware(registry: MethodRegistry, node: NodeClient | None):
    async def middleware(request: pjrpc.common.Request, context: Any, handler: Callable[..., Awaitable]):
        method = request.method
        if registry.get(method) is None and node is not None and method.startswith("eth_"):
            return await _forward(request, node)
        try:
            return await handler(request, context)
        except InvalidParamsError as e:
            raise JsonRpcError(-32602, f"invalid params for {method}: {e.data}") from None

    return middleware


def _as_rpc_errors(func):
    """pjrpc turns any exception other than its own into a bare -32000; ours carry codes."""
    @functools.wraps(func)
    async def wrapper(*args, **kwargs):
        try:
            return await func(*args, **kwargs)
        except BundlerError as e:
            raise JsonRpcError(e.code, e.message, pjrpc.common.UNSET if e.data is None else e.data) from None
        except JsonRpcError:
            raise
        except Exception as e:  # a bug of ours: say so, keep serving
            log.exception("internal error in %s", func.__name__)
            raise JsonRpcError(-32603, f"internal error: {type(e).__name__}: {e}"[:500]) from None

    return wrapper


async def _forward(request: pjrpc.common.Request, node: NodeClient):
    """Methods we do not serve ourselves go to the node, so a client can use one URL."""
    params = request.params
    if params is None:
        params = []
    if not isinstance(params, list):
        raise JsonRpcError(-32602, f"invalid params for {request.method}: expected an array")
    try:
        result = await node.call(request.method, *params)
    except NodeRpcError as e:
        raise JsonRpcError(e.code, e.message, pjrpc.common.UNSET if e.data is None else e.data) from None
    except BundlerError as e:
        raise JsonRpcError(e.code, e.message) from None
    if request.id is None:
        return pjrpc.common.UNSET
    return pjrpc.common.Response(id=request.id, result=result)


def build_app(
    registry: MethodRegistry,
    node: NodeClient | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    max_batch: int = DEFAULT_MAX_BATCH,
    extra_routes: Callable[[web.Application], None] | None = None,
    rate_limiter: "ClientRateLimiter | None" = None,
) -> web.Application:
    dispatcher = AsyncDispatcher(
        middlewares=[_make_middleware(registry, node)], max_batch_size=max_batch, json_loader=_load_json
    )
    for method in registry.values():
        method.func = _as_rpc_errors(method.func)
    dispatcher.add_methods(registry)

    async def handle(http_request: web.Request) -> web.Response:
        try:
            raw = await http_request.read()
        except web.HTTPRequestEntityTooLarge:
            return web.Response(
                status=413, content_type="application/json",
                text=_error_body(-32600, f"request body larger than {max_body_bytes} bytes"),
            )
        batch = _parse_batch(raw)
        if rate_limiter is not None:
            wait = await rate_limiter.allow(http_request, len(batch) if batch else 1)
            if wait is not None:
                return web.Response(
                    status=429, content_type="application/json",
                    headers={"Retry-After": rate_limiter.retry_after(wait)},
                    text=_error_body(RATE_LIMIT_CODE, "rate limit exceeded"),
                )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return web.json_response(text=_error_body(-32700, "parse error: body is not UTF-8"))
        if not text.strip():
            return web.json_response(text=_error_body(-32700, "parse error: empty body"))
        if batch and len(batch) <= max_batch:
            # pjrpc refuses a whole batch for one malformed member; JSON-RPC 2.0 answers each
            # member on its own (and nothing for notifications)
            answers = await asyncio.gather(*(_dispatch_member(dispatcher, m, http_request) for m in batch))
            answered = [a for a in answers if a is not None]
            if not answered:
                return web.Response(status=204)
            return web.json_response(text="[" + ",".join(answered) + "]")
        answer = await dispatcher.dispatch(text, context=http_request)
        if answer is None:  # a notification
            return web.Response(status=204)
        return web.json_response(text=answer[0])

    app = web.Application(client_max_size=max_body_bytes)
    app.router.add_post("/", handle)
    app.router.add_post("/rpc", handle)
    if extra_routes:
        extra_routes(app)
    return app
