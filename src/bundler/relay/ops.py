"""Building and submitting the relay's UserOperations: nonce lanes, gas estimate, fees, the
session (or enable) signature, and the in-process submission through the pool's admission.

Nonce lanes: the EntryPoint's 2D nonce (key << 64 | sequence) gives every key its own sequence,
so ops in different lanes never wait for each other. A call takes the free lane with the fewest
ops pending in the mempool; its sequence follows the lane's pending ops, or the chain's nonce of
that key when none is pending. One lock per (account, lane) keeps two builds from taking the same
nonce; builds in different lanes run at the same time.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from typing import Any, Protocol

from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector

from ..chain.fees import suggest_fees
from ..entrypoint import EntryPointVersion
from ..sessions import abi
from ..userop.model import UserOperation
from .keystore import SessionKey

_GET_NONCE = function_signature_to_4byte_selector("getNonce(address,uint192)")
_OWNER = function_signature_to_4byte_selector("owner()")
SEQUENCE_BITS = 64


class PoolPort(Protocol):
    """What the relay needs from the bundler it runs in (one process, one pool)."""

    chain_id: int
    node: Any  # chain.client.NodeClient
    head: Any  # chain.head.HeadTracker
    mempool: Any  # pool.mempool.Mempool
    admission: Any  # pool.admission.Admission
    estimator: Any  # gas.estimate.Estimator
    config: Any


@dataclass(frozen=True)
class CallSpec:
    to: str
    value: int
    data: bytes


def call_data_for(calls: list[CallSpec]) -> bytes:
    if len(calls) == 1:
        c = calls[0]
        return abi.encode_execute(c.to, c.value, c.data)
    return abi.encode_execute_batch([abi.Call(c.to, c.value, c.data) for c in calls])


async def chain_nonce(node, ep: EntryPointVersion, account: str, key: int) -> int:
    out = await node.eth_call(ep.address, _GET_NONCE + encode(["address", "uint192"], [account, key]))
    return decode(["uint256"], out)[0]


async def owner_of(node, account: str) -> str | None:
    try:
        out = await node.eth_call(account, _OWNER)
    except Exception:
        return None
    if len(out) != 32:
        return None
    return "0x" + out[12:].hex()


def period_index(spec: abi.SessionSpec, now: int) -> int:
    if not spec.period or now < spec.valid_after:
        return 0
    return (now - spec.valid_after) // spec.period


class Lanes:
    """Per account: one asyncio.Lock per nonce lane (keys 1..count; key 0 is left to the owner)."""

    def __init__(self, count: int):
        self.count = max(1, count)
        self._locks: dict[str, list[asyncio.Lock]] = {}

    def pick(self, account: str, pending_per_lane: dict[int, int]) -> tuple[int, asyncio.Lock]:
        locks = self._locks.setdefault(account, [asyncio.Lock() for _ in range(self.count)])
        order = sorted(range(self.count), key=lambda i: (locks[i].locked(), pending_per_lane.get(i + 1, 0), i))
        i = order[0]
        return i + 1, locks[i]


class OpBuilder:
    def __init__(self, pool: PoolPort, lanes: Lanes):
        self.pool = pool
        self.lanes = lanes

    def _pending(self, account: str, ep: EntryPointVersion) -> list[UserOperation]:
        return [e.op for e in self.pool.mempool.for_sender(account) if e.entry_point == ep]

    def pending_count(self, account: str, ep: EntryPointVersion) -> int:
        return len(self._pending(account, ep))

    async def _next_nonce(self, account: str, ep: EntryPointVersion, lane: int) -> int:
        seqs = [op.nonce_sequence for op in self._pending(account, ep) if op.nonce_key == lane]
        if seqs:
            return (lane << SEQUENCE_BITS) | (max(seqs) + 1)
        return await chain_nonce(self.pool.node, ep, account, lane)

    async def submit_session_op(self, *, ep: EntryPointVersion, account: str, calls: list[CallSpec],
                                key: SessionKey, spec: abi.SessionSpec,
                                enable: tuple[int, bytes] | None = None) -> tuple[str, int, int]:
        """Build, estimate, sign and submit one op in a lane; (userOpHash, lane, nonce). `enable` =
        (grant nonce, owner's EIP-712 signature): the op carries the grant (mode 0x02)."""
        pending_per_lane: dict[int, int] = {}
        for op in self._pending(account, ep):
            pending_per_lane[op.nonce_key] = pending_per_lane.get(op.nonce_key, 0) + 1
        lane, lock = self.lanes.pick(account, pending_per_lane)
        async with lock:
            header = await self.pool.head.fresh()
            now = max(int(time.time()), header.timestamp)
            period = period_index(spec, now)
            nonce = await self._next_nonce(account, ep, lane)
            max_fee, priority = await suggest_fees(self.pool.node, header, self.pool.config.min_priority_fee)

            def signature(sig65: bytes) -> bytes:
                if enable is None:
                    return abi.encode_session_signature(key.address, period, sig65)
                return abi.encode_enable_signature(spec, enable[0], enable[1], period, sig65)

            op = UserOperation(sender=account, nonce=nonce, call_data=call_data_for(calls), call_gas_limit=0,
                               verification_gas_limit=0, pre_verification_gas=0, max_fee_per_gas=max_fee,
                               max_priority_fee_per_gas=priority, signature=signature(abi.DUMMY_ECDSA_SIGNATURE))
            est = await self.pool.estimator.estimate(op, ep)
            op = replace(op, call_gas_limit=int(est["callGasLimit"], 16),
                         verification_gas_limit=int(est["verificationGasLimit"], 16),
                         pre_verification_gas=int(est["preVerificationGas"], 16))
            op = replace(op, signature=signature(key.sign(ep.user_op_hash(op, self.pool.chain_id))))
            op_hash = await self.pool.admission.submit(op, ep)
            return op_hash, lane, nonce

    async def owner_op(self, ep: EntryPointVersion, account: str, call_data: bytes) -> tuple[UserOperation, str]:
        """An unsigned owner op (key 0) with gas and fees, and the hash the owner signs."""
        header = await self.pool.head.fresh()
        nonce = await chain_nonce(self.pool.node, ep, account, 0)
        max_fee, priority = await suggest_fees(self.pool.node, header, self.pool.config.min_priority_fee)
        # fees with headroom: the owner may sign minutes later
        op = UserOperation(sender=account, nonce=nonce, call_data=call_data, call_gas_limit=0,
                           verification_gas_limit=0, pre_verification_gas=0, max_fee_per_gas=2 * max_fee,
                           max_priority_fee_per_gas=priority,
                           signature=abi.encode_owner_signature(abi.DUMMY_ECDSA_SIGNATURE))
        est = await self.pool.estimator.estimate(op, ep)
        op = replace(op, call_gas_limit=int(est["callGasLimit"], 16),
                     verification_gas_limit=int(est["verificationGasLimit"], 16) + 10_000,
                     pre_verification_gas=int(est["preVerificationGas"], 16), signature=b"")
        return op, "0x" + ep.user_op_hash(op, self.pool.chain_id).hex()
