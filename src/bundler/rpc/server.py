"""aiohttp + pjrpc: JSON-RPC 2.0 over HTTP (batches included), with errors that always carry a
code and a message, whatever the caller sends."""
from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import secrets
from typing import Any, Awaitable, Callable

import orjson
import pjrpc
from aiohttp import web
from pjrpc.server import AsyncDispatcher, MethodRegistry
from pjrpc.server.dispatcher import JSONEncoder
from pjrpc.server.dispatcher import logger as _pjrpc_log
from pjrpc.server.exceptions import InvalidParamsError, JsonRpcError
from pjrpc.server.validators import BaseValidator

from ..chain.client import NodeClient, NodeRpcError
from ..config import DEFAULT_FORWARD_METHODS
from ..errors import BundlerError
from .edge import EdgePolicy, apply_cors, from_browser_page
from .edge import install as install_edge
from .errors import INVALID_PARAMS, to_rpc_error
from .forward import METHOD_NOT_FOUND, ForwardPolicy, check_get_logs
from .ratelimit import RATE_LIMIT_CODE, ClientRateLimiter

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY = 1 << 20
DEFAULT_MAX_BATCH = 100


def _error_body(code: int, message: str) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}})


def _load_json(text: Any, cls=None):
    # orjson refuses nesting deeper than 1024 by itself. The stdlib parser recurses on the C
    # stack, and py-evm raises the interpreter's recursion limit on import, so a deeply
    # nested body would crash the process instead of raising.
    if isinstance(text, dict):  # a request handle() parsed already: not dumped and parsed again
        return text
    return orjson.loads(text)


def _dump_json(obj: Any, cls: Any = None) -> str:
    """pjrpc's response dumper: orjson (several times json.dumps's speed on the answers this
    server sends), json.dumps with pjrpc's encoder for what orjson refuses (integers beyond 64
    bits, pjrpc's own objects). Either way the same JSON value, orjson's without spaces."""
    try:
        return orjson.dumps(obj).decode()
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(obj, cls=cls)


_BAD_MEMBER = _error_body(-32600, "invalid request: a batch member must be a JSON object")
# stands in for "id": null inside pjrpc, which would take the request for a notification
_NULL_ID = "bundler-null-id-" + secrets.token_hex(8)


def _is_null_id(member: dict) -> bool:
    return "id" in member and member["id"] is None


async def _dispatch_member(dispatcher: AsyncDispatcher, member: Any, context,
                           direct: "_DirectCall | None" = None) -> str | None:
    """One request's answer (JSON text), None for a notification. `"id": null` is a request
    (JSON-RPC 2.0): it is answered, with "id": null."""
    if not isinstance(member, dict):
        return _BAD_MEMBER
    if direct is not None:
        direct_answer = await direct(member, context)
        if direct_answer is not None:
            return direct_answer
    null_id = _is_null_id(member)
    if null_id:
        member = {**member, "id": _NULL_ID}
    # the parsed object itself: _load_json hands it to pjrpc as it is (no JSON text again)
    answer = await dispatcher.dispatch(member, context=context)  # type: ignore[arg-type]
    if answer is None:
        return None
    if not null_id:
        return answer[0]
    response = orjson.loads(answer[0])
    response["id"] = None
    return orjson.dumps(response).decode()


class _DirectCall:
    """The usual request without pjrpc's dispatch chain (request object, middleware partials,
    binding, response object: about a tenth of an eth_sendUserOperation's CPU over HTTP): a
    JSON-RPC 2.0 request with an integer or string id, a method this server serves (not a
    private one asked from a web page) whose parameters _PositionalValidator binds by its
    shortcut, params an array. Answers as pjrpc would (the same response object, the same
    errors: the handlers raise JsonRpcError through _as_rpc_errors). Any other request returns
    None: pjrpc handles it, with its own checks and errors."""

    def __init__(self, registry: MethodRegistry, edge: EdgePolicy, encoder: Any) -> None:
        self._registry = registry
        self._edge = edge
        self._encoder = encoder

    async def __call__(self, member: dict, context: Any) -> str | None:
        request_id = member.get("id")
        method_name = member.get("method")
        params = member.get("params")
        if (type(request_id) not in (int, str) or type(method_name) is not str or type(params) is not list
                or member.get("jsonrpc") != "2.0" or request_id == _NULL_ID):
            return None
        method = self._registry.get(method_name)
        if method is None or method.pass_context is not False:
            return None
        validator = method.validator
        if not isinstance(validator, _PositionalValidator):
            return None
        names = validator._names
        if names is None or not validator._required <= len(params) <= len(names):
            return None
        if self._edge.is_private_method(method_name) and from_browser_page(context):
            return None  # the middleware's refusal, from pjrpc
        try:
            result = await method.func(**dict(zip(names, params)))
            response = pjrpc.common.Response(id=request_id, result=result)
        except JsonRpcError as e:  # what pjrpc's dispatcher answers (and logs) for it
            _pjrpc_log.info("method execution error %s(%r): %r", method_name, params, e)
            response = pjrpc.common.Response(id=request_id, error=e)
        except Exception as e:  # _as_rpc_errors lets none through; if one did: as pjrpc answers it
            _pjrpc_log.exception("method unhandled exception %s(%r): %r", method_name, params, e)
            response = pjrpc.common.Response(id=request_id, error=pjrpc.server.exceptions.ServerError())
        return _dump_json(response.to_json(), cls=self._encoder)


def _make_middleware(registry: MethodRegistry, node: NodeClient | None, forward: ForwardPolicy, edge: EdgePolicy):
    async def middleware(request: pjrpc.common.Request, context: Any, handler: Callable[..., Awaitable]):
        method = request.method
        if edge.is_private_method(method) and from_browser_page(context):
            raise JsonRpcError(METHOD_NOT_FOUND, f"method {method[:100]!r} is not served to web pages "
                                                 f"(the request carries an Origin header)")
        if registry.get(method) is None:
            if node is not None and forward.allows(method):
                return await _forward(request, node, forward)
            raise JsonRpcError(METHOD_NOT_FOUND, f"method {method[:100]!r} not found")
        try:
            return await handler(request, context)
        except InvalidParamsError as e:
            raise to_rpc_error(e, method) from None

    return middleware


class _PositionalValidator(BaseValidator):
    """pjrpc's parameter check (inspect.Signature.bind, a tenth of the edge's CPU per request)
    with a shortcut for the usual call: params an array no longer than the method's parameter
    list and covering its required ones, all plain parameters, binds as the same names in
    order. Any other params (an object, too few, too many, null) go to pjrpc's own check
    unchanged, with its errors. For methods without an injected context (pjrpc's validator
    then sees every parameter of the function)."""

    def __init__(self, func: Callable[..., Any]) -> None:
        super().__init__(func)
        params = list(self._signature.parameters.values())
        plain = all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params)
        self._names = tuple(p.name for p in params) if plain else None
        self._required = sum(1 for p in params if p.default is inspect.Parameter.empty)

    def validate_params(self, params: Any) -> dict[str, Any]:
        names = self._names
        if names is not None and type(params) is list and self._required <= len(params) <= len(names):
            return dict(zip(names, params))
        return super().validate_params(params)


def _as_rpc_errors(func, method: str):
    """pjrpc turns any exception other than its own into a bare -32000; ours carry codes."""
    @functools.wraps(func)
    async def wrapper(*args, **kwargs):
        try:
            return await func(*args, **kwargs)
        except Exception as e:
            raise to_rpc_error(e, method) from None

    return wrapper


async def _forward(request: pjrpc.common.Request, node: NodeClient, policy: ForwardPolicy):
    """Allowed node methods we do not serve ourselves go to the node (rpc/forward.py)."""
    params = request.params
    if params is None:
        params = []
    if not isinstance(params, list):
        raise JsonRpcError(INVALID_PARAMS, f"invalid params for {request.method}: expected an array")
    try:
        if request.method == "eth_getLogs":
            await check_get_logs(node, params, policy.get_logs_max_blocks)
        result = await node.call(request.method, *params)
    except (NodeRpcError, BundlerError) as e:
        raise to_rpc_error(e, request.method) from None
    if request.id is None:
        return pjrpc.common.UNSET
    return pjrpc.common.Response(id=request.id, result=result)


def _parse_body(raw: bytes) -> tuple[Any, str | None]:
    """(parsed JSON, None) or (None, the JSON-RPC error body to answer)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, _error_body(-32700, "parse error: body is not UTF-8")
    if not text.strip():
        return None, _error_body(-32700, "parse error: empty body")
    try:
        return orjson.loads(raw), None
    except orjson.JSONDecodeError as e:
        return None, _error_body(-32700, f"parse error: {str(e)[:200]}")


def build_app(
    registry: MethodRegistry,
    node: NodeClient | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    max_batch: int = DEFAULT_MAX_BATCH,
    extra_routes: Callable[[web.Application], None] | None = None,
    rate_limiter: "ClientRateLimiter | None" = None,
    forward: ForwardPolicy | None = None,
    edge: EdgePolicy | None = None,
) -> web.Application:
    """The one aiohttp app: JSON-RPC on / and /rpc, `extra_routes` (health, metrics, other
    packages' HTTP APIs), all under the same edge policy (rpc/edge.py)."""
    forward = forward or ForwardPolicy(frozenset(DEFAULT_FORWARD_METHODS))
    edge = edge or EdgePolicy()
    dispatcher = AsyncDispatcher(
        middlewares=[_make_middleware(registry, node, forward, edge)], max_batch_size=max_batch,
        json_loader=_load_json, json_dumper=_dump_json,
    )
    for method in registry.values():
        if method.pass_context is False:  # the validator sees every parameter of func
            method.validator = _PositionalValidator(method.func)
        method.func = _as_rpc_errors(method.func, method.name)
    dispatcher.add_methods(registry)
    direct = _DirectCall(registry, edge, JSONEncoder)

    async def handle(http_request: web.Request) -> web.Response:
        try:
            raw = await http_request.read()
        except web.HTTPRequestEntityTooLarge:
            return web.Response(
                status=413, content_type="application/json",
                text=_error_body(-32600, f"request body larger than {max_body_bytes} bytes"),
            )
        body, parse_error = _parse_body(raw)
        if rate_limiter is not None:
            wait = await rate_limiter.allow(http_request, len(body) if isinstance(body, list) and body else 1)
            if wait is not None:
                return web.Response(
                    status=429, content_type="application/json",
                    headers={"Retry-After": rate_limiter.retry_after(wait)},
                    text=_error_body(RATE_LIMIT_CODE, "rate limit exceeded"),
                )
        if parse_error is not None:
            return web.json_response(text=parse_error)
        if isinstance(body, dict):
            answer = await _dispatch_member(dispatcher, body, http_request, direct)
            return web.Response(status=204) if answer is None else web.json_response(text=answer)
        if not isinstance(body, list):
            return web.json_response(text=_error_body(-32600, "invalid request: expected a JSON object or array"))
        if not body:
            return web.json_response(text=_error_body(-32600, "invalid request: empty batch"))
        if len(body) > max_batch:
            return web.json_response(text=_error_body(
                -32600, f"invalid request: batch of {len(body)} requests is larger than the limit of "
                        f"{max_batch} (--max-batch)"))
        # pjrpc refuses a whole batch for one malformed member; JSON-RPC 2.0 answers each
        # member on its own (and nothing for notifications)
        answers = await asyncio.gather(*(_dispatch_member(dispatcher, m, http_request, direct) for m in body))
        answered = [a for a in answers if a is not None]
        if not answered:
            return web.Response(status=204)
        return web.json_response(text="[" + ",".join(answered) + "]")

    app = web.Application(client_max_size=max_body_bytes)
    install_edge(app)
    app.router.add_post("/", handle)
    app.router.add_post("/rpc", handle)
    if extra_routes:
        extra_routes(app)
    apply_cors(app, edge)
    return app
