"""What several namespaces parse the same way: the EntryPoint param, an op hash."""
from __future__ import annotations

import re
from typing import Any, Protocol, Sequence

from eth_utils import to_checksum_address

from ... import entrypoint as eps
from ...errors import InvalidParams

_HASH = re.compile(r"^0x[0-9a-fA-F]{64}$")


class ServesEntryPoints(Protocol):
    @property
    def entry_points(self) -> Sequence[eps.EntryPointVersion]: ...


def entry_point(services: ServesEntryPoints, address: Any) -> eps.EntryPointVersion:
    ep = eps.by_address(address) if isinstance(address, str) else None
    if ep is None or ep not in services.entry_points:
        supported = ", ".join(to_checksum_address(e.address) for e in services.entry_points)
        raise InvalidParams(f"unsupported entryPoint {address!r}; this bundler serves {supported}")
    return ep


def op_hash(value: Any) -> str:
    if not isinstance(value, str) or not _HASH.match(value):
        # the reference bundler's wording, which compliance suites match
        raise InvalidParams("Missing/invalid userOpHash")
    return value.lower()
