"""debug_bundler_* (the ERC-4337 bundler spec's debug namespace, behind --debug-api)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from pjrpc.server import MethodRegistry

from ...chain.client import EthCaller
from ...entrypoint import EntryPointVersion
from ...pool.pool import Pool
from ...pool.reputation import Entry
from ...pool.staking import is_staked, read_deposit_info
from ...userop.codec import format_user_operation, parse_address
from ..params import decode_bundling_mode, decode_entry_point, decode_reputation_entries
from ..results import encode_reputation, encode_stake_status

class SentBundleView(Protocol):
    @property
    def tx_hash(self) -> str: ...


class BundlingControl(Protocol):
    """What debug_bundler_setBundlingMode / sendBundleNow drive (builder.Builder)."""

    mode: str

    def notify_new_op(self) -> None: ...

    async def bundle_all(self) -> Sequence[SentBundleView]: ...


@dataclass(frozen=True)
class DebugServices:
    entry_points: Sequence[EntryPointVersion]
    pool: Pool
    bundling: BundlingControl
    node: EthCaller


def debug_registry(services: DebugServices) -> MethodRegistry:
    r = MethodRegistry()
    pool = services.pool

    @r.add(name="debug_bundler_clearState")
    async def clear_state() -> str:
        pool.clear_state()
        return "ok"

    @r.add(name="debug_bundler_clearMempool")
    async def clear_mempool() -> str:
        pool.clear()  # the removed ops are recorded dropped: they do not come back on a restart
        return "ok"

    @r.add(name="debug_bundler_dumpMempool")
    async def dump_mempool(entry_point: Any = None) -> list[dict]:
        ep = decode_entry_point(entry_point, services.entry_points) if entry_point is not None else None
        return [format_user_operation(e.op) for e in pool.dump(ep)]

    @r.add(name="debug_bundler_setBundlingMode")
    async def set_bundling_mode(mode: Any) -> str:
        mode = decode_bundling_mode(mode)
        services.bundling.mode = mode
        if mode == "auto":
            services.bundling.notify_new_op()
        return "ok"

    @r.add(name="debug_bundler_clearReputation")
    async def clear_reputation() -> str:
        pool.clear_reputation()
        return "ok"

    @r.add(name="debug_bundler_setReputation")
    async def set_reputation(entries: Any, entry_point: Any) -> str:
        ep = decode_entry_point(entry_point, services.entry_points)
        for address, seen, included in decode_reputation_entries(entries):
            pool.set_reputation(ep, address, seen, included)
        return "ok"

    @r.add(name="debug_bundler_dumpReputation")
    async def dump_reputation(entry_point: Any) -> list[dict]:
        ep = decode_entry_point(entry_point, services.entry_points)
        return encode_reputation((row.address, Entry(row.ops_seen, row.ops_included), row.status)
                                 for row in pool.dump_reputation(ep))

    @r.add(name="debug_bundler_getStakeStatus")
    async def get_stake_status(address: Any, entry_point: Any) -> dict:
        ep = decode_entry_point(entry_point, services.entry_points)
        address = parse_address(address, "address")
        info = await read_deposit_info(services.node, ep, address)
        return encode_stake_status(address, info, is_staked(info, pool.stake_policy))

    @r.add(name="debug_bundler_sendBundleNow")
    async def send_bundle_now() -> Any:
        results = await services.bundling.bundle_all()
        if not results:
            return "ok"
        return results[0].tx_hash if len(results) == 1 else [r.tx_hash for r in results]

    return r
