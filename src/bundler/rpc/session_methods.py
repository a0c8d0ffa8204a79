"""session_* JSON-RPC methods: what a session key may still do, and what it did through this
bundler. Parameters are parsed here; the answers come from sessions.service."""
from __future__ import annotations

from typing import Any

from pjrpc.server import MethodRegistry

from ..errors import InvalidParams
from .methods import _entry_point
from .params import decode_account_and_session_key


def session_registry(bundler) -> MethodRegistry:
    r = MethodRegistry()

    def service():
        sessions = getattr(bundler, "sessions", None)
        if sessions is None or not sessions.contracts:
            raise InvalidParams("this bundler recognises no SessionAccount implementation on this chain "
                                "(see --session-implementations)")
        return sessions

    @r.add(name="session_getSession")
    async def get_session(account: Any, session_key: Any, entry_point: Any = None) -> dict:
        """Spec, status (active | notYetValid | expired | revoked | unknown), uses and every
        cumulative limit: limit, used on chain, pending in the mempool, remaining (allowances:
        in the current period)."""
        account, key = decode_account_and_session_key(account, session_key)
        ep = _entry_point(bundler, entry_point) if entry_point is not None else None
        return await service().session_info(account, key, ep)

    @r.add(name="session_getActivity")
    async def get_activity(account: Any, session_key: Any) -> list[dict]:
        """The ops this session key sent through this bundler: hash, decoded calls, what each
        consumed, status (pending / submitted / mined / dropped with its reason)."""
        account, key = decode_account_and_session_key(account, session_key)
        return await service().activity(account, key)

    return r
