"""The JSON-RPC method tables: parse params, call the services, format results. No logic."""
from __future__ import annotations

from typing import Any

from eth_utils import to_checksum_address
from pjrpc.server import MethodRegistry

from .. import CLIENT_VERSION
from .. import entrypoint as eps
from ..pool.staking import is_staked, read_deposit_info
from .params import (
    decode_bundling_mode, decode_entry_point, decode_op_hash, decode_reputation_entries, decode_state_override,
)
from .results import encode_found_op, encode_gas_limits, encode_receipt, encode_reputation, encode_stake_status
from ..userop.codec import decode_user_operation, format_user_operation, parse_address

def _entry_point(bundler, address: Any) -> eps.EntryPointVersion:
    return decode_entry_point(address, bundler.entry_points)


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
        return encode_found_op(await bundler.lookup.by_hash(decode_op_hash(op_hash)))

    @r.add(name="eth_getUserOperationReceipt")
    async def get_user_operation_receipt(op_hash: Any) -> dict | None:
        return encode_receipt(await bundler.lookup.receipt(decode_op_hash(op_hash)))

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
        mode = decode_bundling_mode(mode)
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
        parsed = decode_reputation_entries(entries)
        for address, seen, included in parsed:
            bundler.reputation.book.set(ep, address, seen, included)
        return "ok"

    @r.add(name="debug_bundler_dumpReputation")
    async def dump_reputation(entry_point: Any) -> list[dict]:
        ep = _entry_point(bundler, entry_point)
        return encode_reputation(bundler.reputation.book.dump(ep))

    @r.add(name="debug_bundler_getStakeStatus")
    async def get_stake_status(address: Any, entry_point: Any) -> dict:
        ep = _entry_point(bundler, entry_point)
        address = parse_address(address, "address")
        info = await read_deposit_info(bundler.node, ep, address)
        return encode_stake_status(address, info, is_staked(info, bundler.reputation.policy))

    @r.add(name="debug_bundler_sendBundleNow")
    async def send_bundle_now() -> Any:
        results = await bundler.builder.bundle_all()
        if not results:
            return "ok"
        return results[0].tx_hash if len(results) == 1 else [r.tx_hash for r in results]

    return r
