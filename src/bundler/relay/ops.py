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
from typing import TYPE_CHECKING, Sequence

from eth_abi import decode, encode
from eth_hash.auto import keccak
from eth_utils import function_signature_to_4byte_selector

from session_sdk.types import SessionSpec
from session_sdk.signatures import (
    DUMMY_ECDSA_SIGNATURE, encode_enable_signature, encode_owner_signature, encode_session_signature,
)
from session_sdk.calldata import Call, encode_execute, encode_execute_batch

from ..chain.client import NodeClient
from ..chain.fees import suggest_fees
from ..chain.head import HeadTracker
from ..entrypoint import EntryPointVersion
from ..errors import BundlerError
from ..gas.estimate import Estimator
from ..gas.pvg import estimate_pre_verification_gas
from ..pool.pool import Pool
from ..sessions.service import SessionService
from ..userop.model import UserOperation
from .keystore import SessionKey

if TYPE_CHECKING:
    from ..chain.client import NodeClient

_GET_NONCE = function_signature_to_4byte_selector("getNonce(address,uint192)")
_OWNER = function_signature_to_4byte_selector("owner()")
_EPOCH = function_signature_to_4byte_selector("epoch()")
SEQUENCE_BITS = 64
CALL_GAS_MARGIN_PERCENT = 120
PROVISIONAL_CALL_GAS, PROVISIONAL_VERIFICATION_GAS, PROVISIONAL_PVG = 100_000, 150_000, 50_000


@dataclass(frozen=True)
class BundlerServices:
    """What the relay uses of the bundler it runs in (one process, one pool): the pool only
    through its interface (add, the sender's pending ops, an op's recorded state)."""

    chain_id: int
    entry_points: Sequence[EntryPointVersion]
    node: NodeClient
    head: HeadTracker
    pool: Pool
    estimator: Estimator
    sessions: SessionService | None
    min_priority_fee: int
    shared_store: bool  # several instances on one store: lanes are per instance
    executor_addresses: tuple[str, ...]


@dataclass(frozen=True)
class CallSpec:
    to: str
    value: int
    data: bytes


def call_data_for(calls: list[CallSpec]) -> bytes:
    if len(calls) == 1:
        c = calls[0]
        return encode_execute(c.to, c.value, c.data)
    return encode_execute_batch([Call(c.to, c.value, c.data) for c in calls])


async def chain_nonce(node: NodeClient, ep: EntryPointVersion, account: str, key: int) -> int:
    out = await node.eth_call(ep.address, _GET_NONCE + encode(["address", "uint192"], [account, key]))
    return decode(["uint256"], out)[0]


async def owner_of(node: NodeClient, account: str) -> str | None:
    try:
        out = await node.eth_call(account, _OWNER)
    except Exception:
        return None
    if len(out) != 32:
        return None
    return "0x" + out[12:].hex()


async def account_epoch(node: NodeClient, account: str) -> int:
    """account.epoch(): enable signatures name it, revokeAllSessions moves it on."""
    return decode(["uint32"], await node.eth_call(account, _EPOCH))[0]


def period_index(spec: SessionSpec, now: int) -> int:
    if not spec.period or now < spec.valid_after:
        return 0
    return (now - spec.valid_after) // spec.period


class Lanes:
    """Per account: one asyncio.Lock per nonce lane, keys base+1..base+count (key 0 is left to the
    owner). Instances sharing a store get lanes of their own (`base`), so two of them never build
    ops with the same nonce for one account."""

    def __init__(self, count: int, base: int = 0):
        self.count = max(1, count)
        self.base = base
        self._locks: dict[str, list[asyncio.Lock]] = {}

    def pick(self, account: str, pending_per_lane: dict[int, int]) -> tuple[int, asyncio.Lock]:
        locks = self._locks.setdefault(account, [asyncio.Lock() for _ in range(self.count)])
        keys = [self.base + i + 1 for i in range(self.count)]
        order = sorted(range(self.count), key=lambda i: (locks[i].locked(), pending_per_lane.get(keys[i], 0), i))
        i = order[0]
        return keys[i], locks[i]


def instance_lane_base(executor_addresses: list[str]) -> int:
    """Lanes of one instance among several on one store: derived from its executor keys, which no
    two running instances share (the store's executor locks), and stable across its restarts."""
    digest = keccak(",".join(sorted(a.lower() for a in executor_addresses)).encode())
    return int.from_bytes(digest[:5], "big") << 16  # below 2**56: fits the stores' BIGINT lane column


class OpBuilder:
    def __init__(self, bundler: BundlerServices, lanes: Lanes):
        self.bundler = bundler
        self.lanes = lanes
        self._fee_cache: tuple[int, tuple[int, int]] | None = None

    async def _fees(self, header) -> tuple[int, int]:
        """(maxFeePerGas, maxPriorityFeePerGas), asked of the node once per block."""
        if self._fee_cache is None or self._fee_cache[0] != header.number:
            self._fee_cache = (header.number, await suggest_fees(self.bundler.node, header,
                                                                 self.bundler.min_priority_fee))
        return self._fee_cache[1]

    def _pending(self, account: str, ep: EntryPointVersion) -> list[UserOperation]:
        return [e.op for e in self.bundler.pool.for_sender(account) if e.entry_point == ep]

    def pending_count(self, account: str, ep: EntryPointVersion) -> int:
        return len(self._pending(account, ep))

    async def _next_nonce(self, account: str, ep: EntryPointVersion, lane: int) -> int:
        seqs = [op.nonce_sequence for op in self._pending(account, ep) if op.nonce_key == lane]
        if seqs:
            return (lane << SEQUENCE_BITS) | (max(seqs) + 1)
        return await chain_nonce(self.bundler.node, ep, account, lane)

    async def submit_session_op(self, *, ep: EntryPointVersion, account: str, calls: list[CallSpec],
                                key: SessionKey, spec: SessionSpec,
                                enable: tuple[int, bytes] | None = None) -> tuple[str, int, int]:
        """Build, estimate, sign and submit one op in a lane; (userOpHash, lane, nonce). `enable` =
        (grant nonce, owner's EIP-712 signature): the op carries the grant (mode 0x02)."""
        pending_per_lane: dict[int, int] = {}
        for op in self._pending(account, ep):
            pending_per_lane[op.nonce_key] = pending_per_lane.get(op.nonce_key, 0) + 1
        lane, lock = self.lanes.pick(account, pending_per_lane)
        async with lock:
            # the head the tracker polls is recent enough for fees and the period; admission
            # reads a fresh one itself
            header = self.bundler.head.latest or await self.bundler.head.fresh()
            now = max(int(time.time()), header.timestamp)
            period = period_index(spec, now)
            nonce = await self._next_nonce(account, ep, lane)
            max_fee, priority = await self._fees(header)

            def signature(sig65: bytes) -> bytes:
                if enable is None:
                    return encode_session_signature(key.address, period, sig65)
                return encode_enable_signature(spec, enable[0], enable[1], period, sig65)

            op = UserOperation(sender=account, nonce=nonce, call_data=call_data_for(calls), call_gas_limit=0,
                               verification_gas_limit=0, pre_verification_gas=0, max_fee_per_gas=max_fee,
                               max_priority_fee_per_gas=priority, signature=signature(DUMMY_ECDSA_SIGNATURE))
            op = await self._with_gas(op, ep, header, fast=enable is None)
            op = replace(op, signature=signature(key.sign(ep.user_op_hash(op, self.bundler.chain_id))))
            op_hash = await self.bundler.pool.add(op, ep)
            return op_hash, lane, nonce

    async def _with_gas(self, op: UserOperation, ep: EntryPointVersion, header, *, fast: bool) -> UserOperation:
        """Gas limits for a session op. A session-mode op of a deployed account (fast) gets the
        session fast path's verification bound (the policy is checked on the way: a refusal
        raises here) and the node's eth_estimateGas of the EntryPoint's call into the account,
        with a margin: no py-evm run. Otherwise, or if the node cannot estimate the call, the
        bundler's own eth_estimateUserOperationGas (py-evm) decides."""
        sessions = self.bundler.sessions
        if fast and sessions is not None:
            # evaluated with gas fields of the order the op will carry: its cost (a gas budget of
            # the grant consumes it) and whether it pays a prefund shape the verification bound
            provisional = replace(op, call_gas_limit=PROVISIONAL_CALL_GAS, verification_gas_limit=PROVISIONAL_VERIFICATION_GAS,
                                  pre_verification_gas=PROVISIONAL_PVG)
            verification = await sessions.check_estimate(provisional, ep, header)
            if verification:
                try:
                    call_gas = int(await self.bundler.node.call("eth_estimateGas", {
                        "from": ep.address, "to": op.sender, "data": "0x" + op.call_data.hex()}), 16)
                except BundlerError:
                    call_gas = 0  # reverts or unsupported: the full estimate says why
                if call_gas:
                    # the transaction estimate already counts the 21,000 base cost and the calldata,
                    # which the op's call does not pay: the margin is for the 63/64 rule
                    op = replace(op, call_gas_limit=call_gas * CALL_GAS_MARGIN_PERCENT // 100,
                                 verification_gas_limit=verification)
                    return replace(op, pre_verification_gas=estimate_pre_verification_gas(op))
        est = await self.bundler.estimator.estimate(op, ep)
        return replace(op, call_gas_limit=est.call_gas_limit, verification_gas_limit=est.verification_gas_limit,
                       pre_verification_gas=est.pre_verification_gas)

    async def owner_op(self, ep: EntryPointVersion, account: str, call_data: bytes) -> tuple[UserOperation, str]:
        """An unsigned owner op (key 0) with gas and fees, and the hash the owner signs."""
        header = await self.bundler.head.fresh()
        nonce = await chain_nonce(self.bundler.node, ep, account, 0)
        max_fee, priority = await suggest_fees(self.bundler.node, header, self.bundler.min_priority_fee)
        # fees with headroom: the owner may sign minutes later
        op = UserOperation(sender=account, nonce=nonce, call_data=call_data, call_gas_limit=0,
                           verification_gas_limit=0, pre_verification_gas=0, max_fee_per_gas=2 * max_fee,
                           max_priority_fee_per_gas=priority,
                           signature=encode_owner_signature(DUMMY_ECDSA_SIGNATURE))
        est = await self.bundler.estimator.estimate(op, ep)
        op = replace(op, call_gas_limit=est.call_gas_limit, verification_gas_limit=est.verification_gas_limit + 10_000,
                     pre_verification_gas=est.pre_verification_gas, signature=b"")
        return op, "0x" + ep.user_op_hash(op, self.bundler.chain_id).hex()
