"""The JSON-RPC method tables: parse params, call the services, format results. No logic."""
from __future__ import annotations

import re
from typing import Any

from eth_utils import to_checksum_address
from pjrpc.server import MethodRegistry

from .. import CLIENT_VERSION
from .. import entrypoint as eps
from ..errors import InvalidParams
from ..pool.staking import read_deposit_info, stake_status
from .params import decode_state_override
from .results import encode_found_op, encode_gas_limits
from ..userop.codec import decode_user_operation, format_user_operation, parse_address, parse_quantity

_HASH = re.compile(r"^0x[0-9a-fA-F]{64}$")


def _entry_point(bundler, address: Any) -> eps.EntryPointVersion:
    ep = eps.by_address(address) if isinstance(address, str) else None
    if ep is None or ep not in bundler.entry_points:
        supported = ", ".join(to_checksum_address(e.address) for e in bundler.entry_points)
        raise InvalidParams(f"unsupported entryPoint {address!r}; this bundler serves {supported}")
    return ep


def _op_hash(value: Any) -> str:
    if not isinstance(value, str) or not _HASH.match(value):
        # the reference bundler's wording, which compliance suites match
        raise InvalidParams("Missing/invalid userOpHash")
    return value.lower()


# the bundler spec's numbers (docs/reputation.md lists the names)
REPUTATION_STATUS_CODES = {"ok": 0, "throttled": 1, "banned": 2}


def eth_registry(bundler) -> MethodRegistry:
    r = MethodRegistry()

    @r.add(name="eth_chainId")
    async def chain_id() -> str:
        return hex(bundler.chain_id)

    @r.add(name="eth_supportedEntryPoints")
    async def supported_entry_points() -> list[str]:
        return [to_checksum_address(ep.address) for ep in bundler.entry_points]

    @r.add(name="web3_clientVersion")
    async def client_version() -> str:
        return CLIENT_VERSION

    @r.add(name="eth_sendUserOperation")
    async def send_user_operation(user_op: Any, entry_point: Any) -> str:
        with bundler.metrics.submission(entry_point):  # counts, latency, op hash on log lines
            ep = _entry_point(bundler, entry_point)
            op = decode_user_operation(user_op)
            return await bundler.admission.submit(op, ep)

    @r.add(name="eth_estimateUserOperationGas")
    async def estimate_user_operation_gas(user_op: Any, entry_point: Any, state_override: Any = None) -> dict:
        ep = _entry_point(bundler, entry_point)
        op = decode_user_operation(user_op, for_estimation=True)
        return encode_gas_limits(await bundler.estimator.estimate(op, ep, decode_state_override(state_override)))

    @r.add(name="eth_getUserOperationByHash")
    async def get_user_operation_by_hash(op_hash: Any) -> dict | None:
        return encode_found_op(await bundler.lookup.by_hash(_op_hash(op_hash)))

    @r.add(name="eth_getUserOperationReceipt")
    async def get_user_operation_receipt(op_hash: Any) -> dict | None:
        return await bundler.lookup.receipt(_op_hash(op_hash))

    return r


def debug_registry(bundler) -> MethodRegistry:
    r = MethodRegistry()

    @r.add(name="debug_bundler_clearState")
    async def clear_state() -> str:
        bundler.clear_state()
        return "ok"

    @r.add(name="debug_bundler_clearMempool")
    async def clear_mempool() -> str:
        bundler.clear_mempool()
        return "ok"

    @r.add(name="debug_bundler_dumpMempool")
    async def dump_mempool(entry_point: Any = None) -> list[dict]:
        ep = _entry_point(bundler, entry_point) if entry_point is not None else None
        return [format_user_operation(e.op) for e in bundler.mempool.entries(ep)]

    @r.add(name="debug_bundler_setBundlingMode")
    async def set_bundling_mode(mode: Any) -> str:
        if mode not in ("auto", "manual"):
            raise InvalidParams("bundling mode must be 'auto' or 'manual'")
        bundler.builder.mode = mode
        if mode == "auto":
            bundler.builder.notify_new_op()
        return "ok"

    @r.add(name="debug_bundler_clearReputation")
    async def clear_reputation() -> str:
        bundler.reputation.clear()
        return "ok"

    @r.add(name="debug_bundler_setReputation")
    async def set_reputation(entries: Any, entry_point: Any) -> str:
        ep = _entry_point(bundler, entry_point)
        if not isinstance(entries, list):
            raise InvalidParams("invalid reputation entries: expected an array of {address, opsSeen, opsIncluded}")
        parsed = []
        for i, item in enumerate(entries):
            if not isinstance(item, dict):
                raise InvalidParams(f"invalid reputation entry {i}: expected an object")
            parsed.append((
                parse_address(item.get("address"), f"reputation entry {i} address"),
                parse_quantity(item.get("opsSeen", 0), f"reputation entry {i} opsSeen"),
                parse_quantity(item.get("opsIncluded", 0), f"reputation entry {i} opsIncluded"),
            ))
        for address, seen, included in parsed:
            bundler.reputation.book.set(ep, address, seen, included)
        return "ok"

    @r.add(name="debug_bundler_dumpReputation")
    async def dump_reputation(entry_point: Any) -> list[dict]:
        ep = _entry_point(bundler, entry_point)
        return [
            {"address": to_checksum_address(address), "opsSeen": hex(e.ops_seen),
             "opsIncluded": hex(e.ops_included),
             # exactly the spec's schema: tools build typed records and break on extra keys
             "status": hex(REPUTATION_STATUS_CODES[status.value])}
            for address, e, status in bundler.reputation.book.dump(ep)
        ]

    @r.add(name="debug_bundler_getStakeStatus")
    async def get_stake_status(address: Any, entry_point: Any) -> dict:
        ep = _entry_point(bundler, entry_point)
        address = parse_address(address, "address")
        info = await read_deposit_info(bundler.node, ep, address)
        return stake_status(address, info, bundler.reputation.policy)

    @r.add(name="debug_bundler_sendBundleNow")
    async def send_bundle_now() -> Any:
        results = await bundler.builder.bundle_all()
        if not results:
            return "ok"
        return results[0].tx_hash if len(results) == 1 else [r.tx_hash for r in results]

    return r
