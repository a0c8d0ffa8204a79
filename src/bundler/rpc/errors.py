"""The one error mapper of the RPC edge: exceptions raised inside (our `BundlerError`s, the
node's errors, pjrpc's own parameter binding, bugs) become JSON-RPC error values with a code
and a message. Handlers and the modules behind them only raise; nothing else builds errors."""
from __future__ import annotations

import logging

import pjrpc
from pjrpc.server.exceptions import InvalidParamsError, JsonRpcError

from ..chain.client import NodeRpcError
from ..errors import BundlerError

log = logging.getLogger(__name__)

INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
MAX_INTERNAL_MESSAGE = 500


def _data(data: object) -> object:
    return pjrpc.common.UNSET if data is None else data


def to_rpc_error(exc: BaseException, method: str) -> JsonRpcError:
    """The JSON-RPC error value answering `method` when `exc` escaped its handler."""
    if isinstance(exc, InvalidParamsError):  # pjrpc could not bind the params to the handler
        return JsonRpcError(INVALID_PARAMS, f"invalid params for {method}: {exc.data}")
    if isinstance(exc, JsonRpcError):  # raised at the edge already as the answer
        return exc
    if isinstance(exc, BundlerError):
        return JsonRpcError(exc.code, exc.message, _data(exc.data))
    if isinstance(exc, NodeRpcError):  # a forwarded call: the node's own error, unchanged
        return JsonRpcError(exc.code, exc.message, _data(exc.data))
    # a bug of ours: say so (without a traceback to the caller), keep serving
    log.error("internal error in %s", method, exc_info=exc)
    return JsonRpcError(INTERNAL_ERROR, f"internal error: {type(exc).__name__}: {exc}"[:MAX_INTERNAL_MESSAGE])
