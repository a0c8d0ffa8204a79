"""session_*: what a session key may still do, and what it did through this bundler.
Parameters are parsed here; the answers come from sessions.service."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from pjrpc.server import MethodRegistry

from ...entrypoint import EntryPointVersion
from ...errors import InvalidParams
from ...sessions.views import ActivityItem, SessionReport
from ..params import decode_account_and_session_key, decode_entry_point
from ..results import encode_activity_item, encode_session_report


class SessionQueries(Protocol):
    """sessions.service.SessionService as the session_* methods ask it."""

    @property
    def contracts(self) -> object: ...  # falsy: no SessionAccount implementation known on this chain

    async def session_info(self, account: str, signer: str, ep: EntryPointVersion | None = None) -> SessionReport: ...

    async def activity(self, account: str, signer: str) -> list[ActivityItem]: ...


@dataclass(frozen=True)
class SessionServices:
    entry_points: Sequence[EntryPointVersion]
    sessions: SessionQueries | None


def session_registry(services: SessionServices) -> MethodRegistry:
    r = MethodRegistry()

    def service() -> SessionQueries:
        sessions = services.sessions
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
        ep = decode_entry_point(entry_point, services.entry_points) if entry_point is not None else None
        return encode_session_report(await service().session_info(account, key, ep))

    @r.add(name="session_getActivity")
    async def get_activity(account: Any, session_key: Any) -> list[dict]:
        """The ops this session key sent through this bundler: hash, decoded calls, what each
        consumed, status (pending / submitted / mined / dropped with its reason)."""
        account, key = decode_account_and_session_key(account, session_key)
        return [encode_activity_item(item) for item in await service().activity(account, key)]

    return r
