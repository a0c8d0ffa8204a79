"""The HTTP edge policy of the bundler's aiohttp app, the same for every route on it: the
JSON-RPC endpoint, /health, /metrics and the routes other packages add through
`build_app(extra_routes=...)` (paymaster, relay, ...).

- Bodies must be `application/json` (HTTP 415 otherwise). A web page can send `text/plain`,
  form and multipart posts to any URL without asking (no CORS preflight); JSON needs a
  preflight, which only the origins below pass. So a page cannot drive a bundler on the
  user's machine behind their back.
- CORS is an explicit setting (`cors_origins`): the listed origins (or `*`) may call the
  public methods from a browser. Routes in `private_paths` are never offered to browsers.
- Private methods (`debug_*`) are never served to a request carrying an `Origin` header:
  browsers always send one on cross-origin requests, and the bundler serves no web pages of
  its own, so such a request comes from someone else's page.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import json
from dataclasses import dataclass, field

import aiohttp_cors
from aiohttp import web

if TYPE_CHECKING:
    from ..config import Config

JSON_CONTENT_TYPE = "application/json"
UNSUPPORTED_MEDIA_CODE = -32600
_BODY_METHODS = ("POST", "PUT", "PATCH")


@dataclass(frozen=True)
class EdgePolicy:
    cors_origins: tuple[str, ...] = ()
    private_method_prefixes: tuple[str, ...] = ("debug_",)
    private_paths: frozenset[str] = field(default_factory=frozenset)
    cors_max_age_s: int = 600

    @classmethod
    def from_config(cls, config: Config) -> "EdgePolicy":
        return cls(cors_origins=tuple(config.cors_origins))

    def is_private_method(self, method: str) -> bool:
        return method.startswith(self.private_method_prefixes)


def from_browser_page(request: web.Request) -> bool:
    """True when a web page sent the request (see the module docstring)."""
    return "Origin" in request.headers


def _error(status: int, code: int, message: str) -> web.Response:
    body = {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}
    return web.Response(status=status, content_type=JSON_CONTENT_TYPE, text=json.dumps(body))


@web.middleware
async def require_json_body(request: web.Request, handler):
    if request.method in _BODY_METHODS and request.content_type != JSON_CONTENT_TYPE:
        shown = request.headers.get("Content-Type", "none")[:100]
        return _error(415, UNSUPPORTED_MEDIA_CODE,
                      f"unsupported Content-Type {shown!r}: send the body as {JSON_CONTENT_TYPE}")
    return await handler(request)


def install(app: web.Application) -> None:
    """Before the routes are added (middlewares must be in place before the app starts)."""
    app.middlewares.append(require_json_body)


def apply_cors(app: web.Application, policy: EdgePolicy) -> None:
    """After every route is added: the allowed origins get CORS answers on each public route."""
    if not policy.cors_origins:
        return  # no CORS headers at all: browsers refuse cross-origin JSON requests
    options = aiohttp_cors.ResourceOptions(
        allow_headers=("Content-Type",), allow_methods=("GET", "POST"), max_age=policy.cors_max_age_s,
    )
    cors = aiohttp_cors.setup(app, defaults={origin: options for origin in policy.cors_origins})
    for route in list(app.router.routes()):
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if path not in policy.private_paths:
            cors.add(route)
