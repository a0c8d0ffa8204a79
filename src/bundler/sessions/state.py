"""Reading session accounts through the node: one JSON-RPC batch per (account, session key,
nonce key, block), cached per block, concurrent requests coalesced.

    rpc = NodeClient(node_url)            # chain/client.py: the one async node client
    reader = SessionStateReader(rpc)
    view = await reader.read(V07, account, signer, nonce_key, header)   # AccountView
    view.state (SessionState), view.code, view.owner, view.nonce, view.balance, view.deposit

NodeClient.many sends every call queued during one event-loop tick as one HTTP request
(JSON-RPC batch), so a burst of admissions costs one round trip. Per-call errors (an eth_call
that reverts, e.g. on an account that is not a SessionAccount) come back as RpcCallError
values, not exceptions: the caller decides.

Only standard eth_* methods at an explicit block number; no debug/trace API.
"""
from __future__ import annotations

import asyncio
import functools
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from eth_abi import encode
from eth_abi.decoding import ContextFramesBytesIO
from eth_abi.registry import registry as abi_registry
from eth_utils import function_signature_to_4byte_selector

from session_sdk.types import SESSION_SPEC_T, Scope, SessionSpec, Status

from ..chain.client import NodeClient, RpcCallError
from ..entrypoint import EntryPointVersion
from .policy import StoredCounter, SessionState

if TYPE_CHECKING:
    from ..chain.types import PinnedBlock


_sel = function_signature_to_4byte_selector


SEL_GET_SESSION = _sel("getSession(address)")
SEL_GET_USAGE = _sel("getUsage(address)")
SEL_OWNER = _sel("owner()")
SEL_GET_NONCE = _sel("getNonce(address,uint192)")
SEL_BALANCE_OF = _sel("balanceOf(address)")
SEL_GET_ADDRESS = _sel("getAddress(address,uint256)")
SEL_ENTRY_POINT = _sel("entryPoint()")
SEL_ACCOUNT_IMPLEMENTATION = _sel("ACCOUNT_IMPLEMENTATION()")
SESSION_INFO_T = f"({SESSION_SPEC_T},uint8,uint64,uint32,uint32)"
_LU = "(uint48,uint256)"
USAGE_T = f"(uint32,{_LU}[],{_LU}[][],{_LU}[],{_LU})"


# ---------------------------------------------------------------- decoding


# the tuple decoders come from eth_abi's registry once (eth_abi.decode looks them up per call)
_SESSION_INFO_DECODER = abi_registry.get_tuple_decoder(SESSION_INFO_T)
_USAGE_DECODER = abi_registry.get_tuple_decoder(USAGE_T)


class _Words:
    """A strict reader of the two view answers' ABI encoding, by hand: eth_abi's generic decoder
    took ~350 us for one getSession answer and ~170 us for one getUsage answer, a tenth of a
    fast-path admission's CPU on the first block that reads an account. It accepts exactly what
    eth_abi's strict decoder accepts for these types (values cleanly padded for their type, bools
    0 or 1, offsets and lengths inside the data) and returns the same nested tuples; anything
    else raises _NotStrict and the caller asks eth_abi (tests/unit/test_session_state_decode.py
    compares both on generated answers, valid and corrupted)."""

    __slots__ = ("data", "size")

    def __init__(self, data: bytes):
        self.data = data
        self.size = len(data)

    def word(self, at: int) -> bytes:
        if at < 0 or at + 32 > self.size:
            raise _NotStrict
        return self.data[at:at + 32]

    def uint(self, at: int, bits: int = 256) -> int:
        value = int.from_bytes(self.word(at), "big")
        if value >> bits:
            raise _NotStrict
        return value

    def address(self, at: int) -> str:
        w = self.word(at)
        if w[:12] != _ZERO12:
            raise _NotStrict
        return "0x" + w[12:].hex()

    def boolean(self, at: int) -> bool:
        value = self.uint(at)
        if value > 1:
            raise _NotStrict
        return bool(value)

    def fixed_bytes(self, at: int, n: int) -> bytes:
        w = self.word(at)
        if w[n:] != bytes(32 - n):
            raise _NotStrict
        return w[:n]

    def pointer(self, base: int, at: int, head_words: int) -> int:
        """The offset stored at `at`, relative to `base`, the start of the enclosing head of
        `head_words` words; like eth_abi, it must point past that head and inside the data."""
        target = base + self.uint(at, 64)
        if target < base + 32 * head_words or target >= self.size:
            raise _NotStrict
        return target

    def array(self, at: int, element_words: int | None) -> tuple[int, list[int]]:
        """(length word's position + 32, element positions) of the array whose length is at `at`;
        element_words: the size of a static element, None for dynamic elements (offsets)."""
        n = self.uint(at, 32)
        start = at + 32
        if element_words is not None:
            if start + n * element_words * 32 > self.size:
                raise _NotStrict
            return start, [start + i * element_words * 32 for i in range(n)]
        if start + n * 32 > self.size:
            raise _NotStrict
        return start, [self.pointer(start, start + i * 32, n) for i in range(n)]


class _NotStrict(Exception):
    pass


_ZERO12 = bytes(12)


def _limit(r: _Words, at: int) -> tuple:
    return (r.uint(at, 8), r.uint(at + 32))


def _spec_tuple(r: _Words, at: int) -> tuple:
    calls = []
    for p in r.array(r.pointer(at, at + 192, 9), None)[1]:
        constraints = tuple(
            (r.uint(c, 8), r.uint(c + 32, 8), r.uint(c + 64, 8), r.uint(c + 96, 32), r.word(c + 128), _limit(r, c + 160))
            for c in r.array(r.pointer(p, p + 160, 6), 7)[1])
        calls.append((r.address(p), r.fixed_bytes(p + 32, 4), r.uint(p + 64), _limit(r, p + 96), constraints))
    transfers = tuple((r.address(t), r.uint(t + 32), _limit(r, t + 64)) for t in r.array(r.pointer(at, at + 224, 9), 4)[1])
    g = r.pointer(at, at + 256, 9)
    gas = (r.uint(g), _limit(r, g + 32), tuple(r.address(a) for a in r.array(r.pointer(g, g + 96, 4), 1)[1]))
    return (r.address(at), r.uint(at + 32, 48), r.uint(at + 64, 48), r.uint(at + 96, 48), r.boolean(at + 128),
            r.uint(at + 160, 32), tuple(calls), transfers, gas)


def _session_info_tuple(data: bytes) -> tuple:
    r = _Words(data)
    at = r.pointer(0, 0, 1)
    return (_spec_tuple(r, r.pointer(at, at, 5)), r.uint(at + 32, 8), r.uint(at + 64, 64), r.uint(at + 96, 32),
            r.uint(at + 128, 32))


def _usage_tuple(data: bytes) -> tuple:
    r = _Words(data)
    at = r.pointer(0, 0, 1)

    def counters(pos: int) -> tuple:
        return tuple((r.uint(c, 48), r.uint(c + 32)) for c in r.array(pos, 2)[1])

    call_args = tuple(counters(p) for p in r.array(r.pointer(at, at + 64, 6), None)[1])
    return (r.uint(at, 32), counters(r.pointer(at, at + 32, 6)), call_args, counters(r.pointer(at, at + 96, 6)),
            (r.uint(at + 128, 48), r.uint(at + 160)))


def session_info_tuple(data: bytes) -> tuple:
    """getSession's answer as eth_abi decodes it: by hand when strictly encoded, else eth_abi."""
    try:
        return _session_info_tuple(data)
    except _NotStrict:
        return _SESSION_INFO_DECODER(ContextFramesBytesIO(data))[0]


def usage_tuple(data: bytes) -> tuple:
    """getUsage's answer as eth_abi decodes it: by hand when strictly encoded, else eth_abi."""
    try:
        return _usage_tuple(data)
    except _NotStrict:
        return _USAGE_DECODER(ContextFramesBytesIO(data))[0]


def decode_session_info(data: bytes) -> SessionState:
    """getSession(signer) output -> SessionState without counters."""
    spec_t, status, grant_nonce, usage_count, epoch = session_info_tuple(data)
    spec = SessionSpec.from_abi(spec_t) if status != Status.NONE else None
    return SessionState(status, grant_nonce, usage_count, spec, {}, epoch)


def decode_usage(data: bytes) -> dict[tuple[int, int, int], StoredCounter]:
    """getUsage(signer) output -> counters per limit key (zero counters left out)."""
    _count, call_value, call_args, transfer_value, gas_cost = usage_tuple(data)
    out: dict[tuple[int, int, int], StoredCounter] = {}
    for i, (period, used) in enumerate(call_value):
        if period or used:
            out[(Scope.CALL_VALUE, i, 0)] = StoredCounter(period, used)
    for i, per_policy in enumerate(call_args):
        for j, (period, used) in enumerate(per_policy):
            if period or used:
                out[(Scope.CALL_ARG, i, j)] = StoredCounter(period, used)
    for i, (period, used) in enumerate(transfer_value):
        if period or used:
            out[(Scope.TRANSFER_VALUE, i, 0)] = StoredCounter(period, used)
    if gas_cost[0] or gas_cost[1]:
        out[(Scope.GAS, 0, 0)] = StoredCounter(*gas_cost)
    return out


class DecodedStates:
    """getSession/getUsage answers decoded, kept by their raw bytes (least recently used out):
    the per-block read cache starts empty at every block, but an account whose session did not
    change answers the same bytes, and decoding them again costs more than all the rest of a
    fast-path admission. Every caller gets its own SessionState and counters dict (the spec and
    the counters are immutable values, shared)."""

    def __init__(self, size: int = 4096):
        self.size = size
        self._info: OrderedDict[bytes, SessionState] = OrderedDict()
        self._usage: OrderedDict[bytes, dict[tuple[int, int, int], StoredCounter]] = OrderedDict()
        self.decoded = 0  # answers actually decoded (tests, benchmarks)

    def clear(self) -> None:
        self._info.clear()
        self._usage.clear()

    def _get(self, cache: OrderedDict, data: bytes, decode_fn):
        value = cache.get(data)
        if value is None:
            value = cache[data] = decode_fn(data)
            self.decoded += 1
            if len(cache) > self.size:
                cache.popitem(last=False)
        else:
            cache.move_to_end(data)
        return value

    def state(self, info: bytes, usage: bytes) -> SessionState:
        s = self._get(self._info, info, decode_session_info)
        counters = self._get(self._usage, usage, decode_usage)
        return SessionState(s.status, s.grant_nonce, s.usage_count, s.spec, dict(counters), s.epoch)


def _hex_int(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) and value not in ("0x", "") else 0


def _hex_bytes(value: Any) -> bytes:
    return bytes.fromhex(value[2:]) if isinstance(value, str) and value.startswith("0x") else b""


@dataclass
class AccountView:
    """An account as seen at one block, for one session key and nonce key."""

    block_number: int
    account: str
    code: bytes = b""
    state: SessionState = field(default_factory=SessionState)
    state_error: str | None = None  # the views could not be read/decoded (not a SessionAccount?)
    owner: str | None = None
    nonce: int | None = None  # EntryPoint nonce (key ‖ sequence) for the op's nonce key
    balance: int = 0
    deposit: int = 0  # EntryPoint deposit


def _forget_failed(fut: asyncio.Future, cache: dict, key: tuple) -> None:
    """A failed read is not cached: the next caller tries again."""
    if fut.cancelled() or fut.exception() is not None:
        cache.pop(key, None)


def _call(to: str, data: bytes, tag: str, overrides: dict | None = None) -> tuple[str, list]:
    params: list = [{"to": to, "data": "0x" + data.hex()}, tag]
    if overrides:
        params.append(overrides)
    return ("eth_call", params)


class SessionStateReader:
    def __init__(self, rpc: NodeClient, cached_blocks: int = 2):
        self.rpc = rpc
        self.cached_blocks = cached_blocks
        self._cache: OrderedDict[tuple, dict[tuple, asyncio.Future]] = OrderedDict()
        self.reads = 0  # batches actually requested (not served from cache)
        self.decoded = DecodedStates()

    def _block_cache(self, header) -> dict[tuple, asyncio.Future]:
        key = (header.number, header.hash)
        cache = self._cache.get(key)
        if cache is None:
            cache = self._cache[key] = {}
            while len(self._cache) > self.cached_blocks:
                self._cache.popitem(last=False)
        return cache

    def invalidate(self, *, decoded: bool = True) -> None:
        """Forget every block's reads and (unless decoded=False) every decoded answer (tests, benchmarks)."""
        self._cache.clear()
        if decoded:
            self.decoded.clear()

    async def read(self, ep: EntryPointVersion, account: str, signer: str, nonce_key: int, header: PinnedBlock, *,
                   code_override: bytes | None = None) -> AccountView:
        """Code, session state of `signer`, owner, EntryPoint nonce/deposit and balance of
        `account` at `header`'s block. code_override: read the views as if the account had
        this code (an EOA whose EIP-7702 delegation rides in the op itself)."""
        cache = self._block_cache(header)
        key = (ep.address, account, signer, nonce_key, code_override)
        fut = cache.get(key)
        if fut is None:
            fut = cache[key] = asyncio.ensure_future(
                self._read(ep, account, signer, nonce_key, header, code_override))
            fut.add_done_callback(functools.partial(_forget_failed, cache=cache, key=key))
        return await asyncio.shield(fut)

    async def _read(self, ep, account, signer, nonce_key, header, code_override) -> AccountView:
        self.reads += 1
        tag = hex(header.number)
        signer_arg = encode(["address"], [signer])
        overrides = {account: {"code": "0x" + code_override.hex()}} if code_override is not None else None
        calls = [
            ("eth_getCode", [account, tag]),
            _call(account, SEL_GET_SESSION + signer_arg, tag, overrides),
            _call(account, SEL_GET_USAGE + signer_arg, tag, overrides),
            _call(account, SEL_OWNER, tag, overrides),
            _call(ep.address, SEL_GET_NONCE + encode(["address", "uint192"], [account, nonce_key]), tag),
            ("eth_getBalance", [account, tag]),
            _call(ep.address, SEL_BALANCE_OF + encode(["address"], [account]), tag),
        ]
        code, info, usage, owner, nonce, balance, deposit = await self.rpc.many(calls)
        view = AccountView(block_number=header.number, account=account)
        view.code = _hex_bytes(code) if not isinstance(code, RpcCallError) else b""
        try:
            if isinstance(info, RpcCallError) or isinstance(usage, RpcCallError):
                raise ValueError((info if isinstance(info, RpcCallError) else usage).message)
            view.state = self.decoded.state(_hex_bytes(info), _hex_bytes(usage))
        except Exception as e:
            view.state_error = f"{type(e).__name__}: {e}"
        if not isinstance(owner, RpcCallError) and isinstance(owner, str) and len(owner) >= 66:
            view.owner = "0x" + owner[-40:]
        view.nonce = None if isinstance(nonce, RpcCallError) else _hex_int(nonce)
        view.balance = 0 if isinstance(balance, RpcCallError) else _hex_int(balance)
        view.deposit = 0 if isinstance(deposit, RpcCallError) else _hex_int(deposit)
        return view

    async def counterfactual_address(self, factory: str, owner: str, salt: int, header: PinnedBlock) -> str | None:
        """factory.getAddress(owner, salt) at `header` (None if the call fails)."""
        data = SEL_GET_ADDRESS + encode(["address", "uint256"], [owner, salt])
        cache = self._block_cache(header)
        key = ("getAddress", factory, owner, salt)
        fut = cache.get(key)
        if fut is None:
            fut = cache[key] = asyncio.ensure_future(self.rpc.many([_call(factory, data, hex(header.number))]))
        (out,) = await asyncio.shield(fut)
        if isinstance(out, RpcCallError) or not isinstance(out, str) or len(out) < 66:
            return None
        return "0x" + out[-40:]
