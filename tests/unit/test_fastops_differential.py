"""sim/fastops.py against py-evm's own opcodes: the same calls run with both must agree on
everything observable (success, error, return data, gas used, logs, storage written, and what
a tracer hooking every opcode sees before each one: pc, gas left, the stack as ints, memory).

Over the repo's test contracts (deployed and called offline) and random short bytecode.
"""
from __future__ import annotations

from typing import Any

import pytest
from eth_abi import encode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bundler.contracts_build import bytecode
from bundler.sim import BlockContext, EvmSession, PinnedBlock
from bundler.sim import executor
from bundler.sim.state import BlockState, OverlayAccountDB
from eth.vm import opcode_values as ov

BLOCK = PinnedBlock(number=10, timestamp=1_700_000_000, base_fee=10**9, gas_limit=30_000_000)
A = b"\xaa" * 20
C = b"\xcc" * 20
D = b"\xdd" * 20


def _int(x: Any) -> int:
    return x if isinstance(x, int) else int.from_bytes(x, "big")


class Recorder:
    """Hooks every opcode; records the machine state each opcode starts from."""

    opcodes = frozenset(range(256))

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def on_enter(self, message, parent) -> None:
        self.events.append(("enter", bytes(message.to), bytes(message.sender), message.value,
                            bytes(message.data), message.gas, message.depth, message.is_static))

    def on_exit(self, message, computation) -> None:
        error = type(computation.error).__name__ if computation.is_error else None
        # the final stack and memory too (what the last opcodes did is seen by no later opcode),
        # unless the frame failed: then they are discarded, and where a failing opcode stopped
        # popping is not observable
        final = () if error else (tuple(_int(x) for x in computation._stack.values),
                                  bytes(computation._memory._bytes))
        self.events.append(("exit", error, bytes(computation.output), computation.get_gas_used(),
                            computation.get_gas_remaining(), final))

    def on_opcode(self, opcode, c) -> None:
        self.events.append((opcode, c.code.program_counter, c._gas_meter.gas_remaining,
                            tuple(_int(x) for x in c._stack.values), bytes(c._memory._bytes)))


def _world(accounts: dict[bytes, bytes]) -> OverlayAccountDB:
    base = BlockState(None, BLOCK)
    base.seed_account(A, 10**20, 0, b"")
    for address, code in accounts.items():
        base.seed_account(address, 10**18, 1, code)
    base.storage[C] = {0: 7, 1: 2**256 - 1}
    return OverlayAccountDB(base)


def _run(monkeypatch, stock: bool, accounts: dict[bytes, bytes], calls: list[dict], traced: bool):
    """Run the calls in sequence on one overlay; everything observable, in order."""
    monkeypatch.setattr(executor, "STOCK_OPCODES", stock)
    db = _world(accounts)
    tracer = Recorder() if traced else None
    session = EvmSession(db, BlockContext.after(BLOCK, 1337, BLOCK.timestamp + 12), tracer)
    expected = executor.StockSimComputation if stock else executor.SimComputation
    assert issubclass(session.state.computation_class, expected)
    out = []
    for call in calls:
        res = session.call(sender=A, **call)
        out.append((res.success, res.error, bytes(res.output), res.gas_used, res.logs, res.refund))
    storage = {a: dict(s) for a, s in db._storage.items()}
    accts = dict(db._accounts)
    return out, storage, accts, tracer.events if tracer else None


def assert_same(monkeypatch, accounts: dict[bytes, bytes], calls: list[dict]) -> list:
    for traced in (False, True):
        stock = _run(monkeypatch, True, accounts, calls, traced)
        fast = _run(monkeypatch, False, accounts, calls, traced)
        assert fast[0] == stock[0]
        assert fast[1] == stock[1]
        assert fast[2] == stock[2]
        assert fast[3] == stock[3]
    return stock[0]


def test_fast_table_replaces_the_hot_opcodes_and_tracers_still_wrap_them():
    fast, stock = executor.SimComputation.opcodes, executor.StockSimComputation.opcodes
    for op in (ov.ADD, ov.PUSH1, ov.PUSH32, ov.DUP1, ov.SWAP16, ov.POP, ov.JUMPI, ov.MSTORE, ov.CALLDATALOAD):
        assert fast[op] is not stock[op]
    traced = executor.traced_computation_class(frozenset({ov.PUSH1, ov.SLOAD}))
    assert isinstance(traced.opcodes[ov.PUSH1], executor._HookedOpcode)
    assert traced.opcodes[ov.PUSH1].fn is fast[ov.PUSH1]
    assert traced._dispatch[ov.ADD] is fast[ov.ADD]


def _sel(signature: str) -> bytes:
    from eth_hash.auto import keccak

    return keccak(signature.encode())[:4]


def test_repo_contracts_behave_the_same(monkeypatch):
    """Deploy TestERC20 and TestAccount, then succeeding and reverting calls of each."""
    erc20 = bytecode("TestERC20")
    account = bytecode("TestAccount") + encode(["address"], ["0x" + A.hex()])
    deployed = assert_same(monkeypatch, {}, [dict(to=None, data=erc20), dict(to=None, data=account)])
    assert all(r[0] for r in deployed)
    token, acct = deployed[0][2], deployed[1][2]
    assert len(token) == len(acct) == 20

    # the deployed code, seeded directly, so the calls below run on runtime code
    db = _world({})
    session = EvmSession(db, BlockContext.after(BLOCK, 1337, BLOCK.timestamp + 12))
    t = session.call(sender=A, to=None, data=erc20).output
    a = session.call(sender=A, to=None, data=account).output
    codes = {C: db.get_code(t), D: db.get_code(a)}
    addr = "0x" + A.hex()
    other = "0x" + "11" * 20
    calls = [
        dict(to=C, data=_sel("mint(address,uint256)") + encode(["address", "uint256"], [addr, 10**21])),
        dict(to=C, data=_sel("mint(address,uint256)") + encode(["address", "uint256"], ["0x" + D.hex(), 9])),
        dict(to=C, data=_sel("transfer(address,uint256)") + encode(["address", "uint256"], [other, 5])),
        dict(to=C, data=_sel("transfer(address,uint256)") + encode(["address", "uint256"], [other, 10**30])),
        dict(to=C, data=_sel("approve(address,uint256)") + encode(["address", "uint256"], [other, 3])),
        dict(to=C, data=_sel("transferFrom(address,address,uint256)")
             + encode(["address", "address", "uint256"], [other, addr, 1])),
        dict(to=C, data=_sel("deposit()"), value=12345),
        dict(to=C, data=b"\x12\x34"),  # no such function
        dict(to=D, data=_sel("fail(string)") + encode(["string"], ["no way"])),
        dict(to=D, data=_sel("execute(address,uint256,bytes)") + encode(
            ["address", "uint256", "bytes"],
            ["0x" + C.hex(), 0, _sel("transfer(address,uint256)") + encode(["address", "uint256"], [other, 1])])),
        dict(to=D, data=_sel("execute(address,uint256,bytes)") + encode(
            ["address", "uint256", "bytes"], ["0x" + C.hex(), 0, b"\xde\xad"])),
        dict(to=C, data=_sel("mint(address,uint256)") + encode(["address", "uint256"], [addr, 1]), gas=30_000),
    ]
    results = assert_same(monkeypatch, codes, calls)
    assert [r[0] for r in results] == [True, True, True, False, True, False, True, False, False, True, False, False]


# -- random short bytecode --
# the specialised opcodes, what pushes bytes entries in py-evm (ADDRESS, CALLER, MLOAD's and
# CALLDATALOAD's results as seen by stock code), and what ends or observes a frame
_OPS = [
    ov.ADD, ov.SUB, ov.AND, ov.OR, ov.LT, ov.GT, ov.EQ, ov.ISZERO, ov.SHL, ov.SHR, ov.POP,
    ov.JUMP, ov.JUMPI, ov.JUMPDEST, ov.MLOAD, ov.MSTORE, ov.CALLDATALOAD, ov.PUSH0,
    ov.DUP1, ov.DUP2, ov.DUP3, ov.DUP16, ov.SWAP1, ov.SWAP2, ov.SWAP16,
    ov.ADDRESS, ov.CALLER, ov.CALLVALUE, ov.CALLDATASIZE, ov.PC, ov.MSIZE, ov.GAS, ov.NOT, ov.BYTE,
    ov.MUL, ov.DIV, ov.SLOAD, ov.SSTORE, ov.MSTORE8, ov.SHA3, ov.LOG1, ov.RETURN, ov.REVERT,
    ov.STOP, ov.EXTCODESIZE, ov.BALANCE, ov.STATICCALL, ov.CALL, 0xFE, 0x0C,
    ov.COINBASE, ov.ORIGIN, ov.BLOCKHASH,  # bytes entries; the coinbase is the zero address
]
_PUSH = st.integers(1, 32).flatmap(
    lambda n: st.one_of(st.binary(min_size=n, max_size=n), st.just(b"\x00" * n), st.just(b"\xff" * n))
    .map(lambda imm, n=n: bytes([ov.PUSH1 + n - 1]) + imm))
_SMALL_PUSH = st.integers(0, 80).map(lambda v: bytes([ov.PUSH1, v]))
_PIECE = st.one_of(st.sampled_from(_OPS).map(lambda op: bytes([op])), _PUSH, _SMALL_PUSH, _SMALL_PUSH)
_CODE = st.tuples(st.lists(_PIECE, max_size=40).map(b"".join),
                  st.one_of(st.just(b""), st.integers(ov.PUSH1, ov.PUSH32).map(lambda op: bytes([op])),
                            st.binary(max_size=3).map(lambda tail: bytes([ov.PUSH8]) + tail))
                  ).map(lambda parts: parts[0] + parts[1])  # sometimes a PUSH cut off by the end of code


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(code=_CODE, callee=_CODE, data=st.binary(max_size=70), gas=st.sampled_from([21_100, 21_400, 60_000, 1_000_000]))
def test_random_bytecode_behaves_the_same(monkeypatch, code, callee, data, gas):
    # C's code may call D (CALL / STATICCALL take D's address from a PUSH20 or CALLER etc.)
    assert_same(monkeypatch, {C: code, D: callee}, [dict(to=C, data=data, gas=gas),
                                                    dict(to=D, data=data[::-1], gas=gas)])


@pytest.mark.parametrize("code", [
    bytes([ov.PUSH1, 3, ov.JUMP, ov.JUMPDEST, ov.PUSH1, 1]),         # a valid JUMPDEST
    bytes([ov.PUSH1, 4, ov.JUMP, ov.PUSH1, ov.JUMPDEST, ov.STOP]),   # a JUMPDEST byte inside PUSH data
    bytes([ov.PUSH1, 2, ov.JUMP]),                                    # not a JUMPDEST
    bytes([ov.PUSH1, 4, ov.JUMP, ov.STOP, ov.JUMPDEST, ov.PUSH1, 0, ov.PUSH1, 0, ov.RETURN]),
    bytes([ov.PUSH32]) + b"\xff" * 32 + bytes([ov.JUMP]),               # far out of code
    bytes([ov.ADD]), bytes([ov.PUSH1, 1, ov.SWAP1]), bytes([ov.DUP1]), bytes([ov.POP]),
    bytes([ov.PUSH1, 1, ov.JUMPI]), bytes([ov.MSTORE]), bytes([ov.MLOAD]), bytes([ov.CALLDATALOAD]),
    bytes([ov.PUSH1, 0xFF] * 1025),                                    # stack overflow
    bytes([ov.PUSH1, 0, ov.DUP1] * 513),                               # overflow by DUP
    bytes([ov.PUSH32]) + b"\xff" * 32 + bytes([ov.MLOAD]),             # memory expansion out of gas
    bytes([ov.CALLER, ov.PUSH1, 0, ov.MSTORE, ov.ADDRESS, ov.ISZERO, ov.CALLER, ov.PUSH1, 1, ov.ADD,
           ov.PUSH1, 0, ov.MLOAD, ov.PUSH1, 32, ov.MSTORE, ov.PUSH1, 64, ov.PUSH1, 0, ov.RETURN]),
    bytes([ov.PUSH0, ov.ISZERO, ov.PUSH0, ov.PUSH0, ov.RETURN]),
    bytes([ov.PUSH2, 0x01]),                                          # PUSH cut off at the end
    bytes([ov.PUSH1, 0, ov.MLOAD, ov.PUSH1, 0, ov.MSTORE, ov.PUSH1, 31, ov.MLOAD, ov.PUSH1, 33, ov.MSTORE]),
    bytes([ov.PUSH1, 64, ov.MSTORE, ov.PUSH1, 32, ov.MLOAD, ov.PUSH1, 64, ov.MLOAD, ov.PUSH1, 65, ov.MLOAD]),
    bytes([ov.COINBASE, ov.ISZERO, ov.COINBASE, ov.COINBASE, ov.JUMPI, ov.COINBASE, ov.MSTORE]),
    bytes([ov.PUSH1, 3, ov.COINBASE, ov.ISZERO, ov.JUMPI, ov.JUMPDEST, ov.CALLER, ov.PUSH1, 8, ov.SWAP1, ov.JUMPI]),
])
def test_edge_cases_behave_the_same(monkeypatch, code):
    for gas in (21_010, 21_050, 100_000):
        assert_same(monkeypatch, {C: code}, [dict(to=C, data=b"\x01" * 40, gas=gas)])
