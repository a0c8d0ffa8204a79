"""Specialised implementations of py-evm's hottest opcodes (same semantics, same gas).

py-evm's stack keeps a mix of ints and bytes and goes through several layers per opcode
(computation.stack_pop_ints -> Stack.pop_ints -> a generator of to_int -> big_endian_to_int,
push_int -> validate_uint256, consume_gas -> GasMeter.consume_gas). Profiled on EntryPoint
validation with the ERC-7562 tracer, that is the bulk of interpreter time. The functions here
work on Stack.values (the plain list) directly, convert a bytes entry only when they need its
value, push ints, and charge their constant gas inline, in py-evm's order: gas first (OutOfGas),
then the stack (InsufficientStack / FullStack), then the operation.

PUSH immediates are decoded once per code object: the int value of each executed PUSH is kept
in a dict per code (shared like the jump-destination analysis, see executor.SimComputation).

What the rest of py-evm sees is unchanged: a stack entry that is an int where py-evm would have
pushed bytes converts to the same bytes wherever py-evm pops bytes (addresses are trimmed and
padded to 20 bytes, MSTORE pads to 32), and tracers read entries with either type.
"""
from __future__ import annotations

from typing import Any, Callable

from eth.exceptions import (
    FullStack, InsufficientStack, InvalidInstruction, InvalidJumpDestination, OutOfGas,
)
from eth.vm import opcode_values as ov

UINT256_MAX = 2**256 - 1
_JUMPDEST = ov.JUMPDEST
_FROM = int.from_bytes


def _oog(meter: Any, cost: int, mnemonic: str) -> OutOfGas:
    return OutOfGas(f"Out of gas: needed {cost} - remaining {meter.gas_remaining} - {mnemonic}")


def _binary(op: Callable[[int, int], int], cost: int, mnemonic: str) -> Callable[[Any], None]:
    """a, b = top, second; the result replaces them (cannot overflow the stack)."""
    def fn(c: Any) -> None:
        m = c._gas_meter
        if m.gas_remaining < cost:
            raise _oog(m, cost, mnemonic)
        m.gas_remaining -= cost
        v = c._stack.values
        if len(v) < 2:
            raise InsufficientStack(f"Wanted 2 stack items, only had {len(v)}")
        a = v.pop()
        b = v[-1]
        if a.__class__ is not int:
            a = _FROM(a, "big")
        if b.__class__ is not int:
            b = _FROM(b, "big")
        v[-1] = op(a, b)

    fn.mnemonic = mnemonic  # type: ignore[attr-defined]
    return fn


# The lambdas cost one call each; writing ADD..SHR out by hand would save about 5% of their time,
# not worth ten near-copies.
_BINARY: dict[int, tuple[str, Callable[[int, int], int]]] = {
    ov.ADD: ("ADD", lambda a, b: (a + b) & UINT256_MAX),
    ov.SUB: ("SUB", lambda a, b: (a - b) & UINT256_MAX),
    ov.AND: ("AND", lambda a, b: a & b),
    ov.OR: ("OR", lambda a, b: a | b),
    ov.LT: ("LT", lambda a, b: 1 if a < b else 0),
    ov.GT: ("GT", lambda a, b: 1 if a > b else 0),
    ov.EQ: ("EQ", lambda a, b: 1 if a == b else 0),
    ov.SHL: ("SHL", lambda shift, value: 0 if shift >= 256 else (value << shift) & UINT256_MAX),
    ov.SHR: ("SHR", lambda shift, value: 0 if shift >= 256 else value >> shift),
}


def _iszero(cost: int) -> Callable[[Any], None]:
    def iszero(c: Any) -> None:
        m = c._gas_meter
        if m.gas_remaining < cost:
            raise _oog(m, cost, "ISZERO")
        m.gas_remaining -= cost
        v = c._stack.values
        if not v:
            raise InsufficientStack("Wanted 1 stack item, had none")
        a = v[-1]
        # a bytes entry is zero when all its bytes are (also b"", what py-evm's PUSH0 pushes)
        v[-1] = 0 if (a if a.__class__ is int else any(a)) else 1
    return iszero


def _push(size: int, cost: int) -> Callable[[Any], None]:
    mnemonic = f"PUSH{size}"

    def push(c: Any) -> None:
        m = c._gas_meter
        if m.gas_remaining < cost:
            raise _oog(m, cost, mnemonic)
        m.gas_remaining -= cost
        v = c._stack.values
        if len(v) > 1023:
            raise FullStack("Stack limit reached")
        stream = c.code
        pc = stream.program_counter  # already past the PUSH opcode
        cache = c._push_values
        value = cache.get(pc)
        if value is None:
            # past the end of the code the immediate is zero-padded on the right, as in py-evm
            value = cache[pc] = _FROM(stream._raw_code_bytes[pc:pc + size].ljust(size, b"\x00"), "big")
        v.append(value)
        stream.program_counter = pc + size
    push.mnemonic = mnemonic  # type: ignore[attr-defined]
    return push


def _push0(cost: int) -> Callable[[Any], None]:
    def push0(c: Any) -> None:
        m = c._gas_meter
        if m.gas_remaining < cost:
            raise _oog(m, cost, "PUSH0")
        m.gas_remaining -= cost
        v = c._stack.values
        if len(v) > 1023:
            raise FullStack("Stack limit reached")
        v.append(0)
    return push0


def _dup(n: int, cost: int) -> Callable[[Any], None]:
    mnemonic = f"DUP{n}"

    def dup(c: Any) -> None:
        m = c._gas_meter
        if m.gas_remaining < cost:
            raise _oog(m, cost, mnemonic)
        m.gas_remaining -= cost
        v = c._stack.values
        if len(v) > 1023:
            raise FullStack("Stack limit reached")
        if len(v) < n:
            raise InsufficientStack(f"Insufficient stack items for {mnemonic}")
        v.append(v[-n])
    return dup


def _swap(n: int, cost: int) -> Callable[[Any], None]:
    mnemonic = f"SWAP{n}"
    idx = -n - 1

    def swap(c: Any) -> None:
        m = c._gas_meter
        if m.gas_remaining < cost:
            raise _oog(m, cost, mnemonic)
        m.gas_remaining -= cost
        v = c._stack.values
        if len(v) <= n:
            raise InsufficientStack(f"Insufficient stack items for {mnemonic}")
        v[-1], v[idx] = v[idx], v[-1]
    return swap


def _pop(cost: int) -> Callable[[Any], None]:
    def pop(c: Any) -> None:
        m = c._gas_meter
        if m.gas_remaining < cost:
            raise _oog(m, cost, "POP")
        m.gas_remaining -= cost
        v = c._stack.values
        if not v:
            raise InsufficientStack("Wanted 1 stack item, had none")
        v.pop()
    return pop


def _jump_to(c: Any, dest: int) -> None:
    stream = c.code
    stream.program_counter = dest
    raw = stream._raw_code_bytes
    if dest >= len(raw) or raw[dest] != _JUMPDEST:
        raise InvalidJumpDestination("Invalid Jump Destination")
    if dest not in stream.valid_positions and not stream.is_valid_opcode(dest):
        raise InvalidInstruction("Jump resulted in invalid instruction")


def _jump(cost: int) -> Callable[[Any], None]:
    def jump(c: Any) -> None:
        m = c._gas_meter
        if m.gas_remaining < cost:
            raise _oog(m, cost, "JUMP")
        m.gas_remaining -= cost
        v = c._stack.values
        if not v:
            raise InsufficientStack("Wanted 1 stack item, had none")
        dest = v.pop()
        _jump_to(c, dest if dest.__class__ is int else _FROM(dest, "big"))
    return jump


def _jumpi(cost: int) -> Callable[[Any], None]:
    def jumpi(c: Any) -> None:
        m = c._gas_meter
        if m.gas_remaining < cost:
            raise _oog(m, cost, "JUMPI")
        m.gas_remaining -= cost
        v = c._stack.values
        if len(v) < 2:
            raise InsufficientStack(f"Wanted 2 stack items, only had {len(v)}")
        dest = v.pop()
        cond = v.pop()
        if cond if cond.__class__ is int else any(cond):
            _jump_to(c, dest if dest.__class__ is int else _FROM(dest, "big"))
    return jumpi


def _jumpdest(cost: int) -> Callable[[Any], None]:
    def jumpdest(c: Any) -> None:
        m = c._gas_meter
        if m.gas_remaining < cost:
            raise _oog(m, cost, "JUMPDEST")
        m.gas_remaining -= cost
    return jumpdest


def _mload(cost: int) -> Callable[[Any], None]:
    def mload(c: Any) -> None:
        m = c._gas_meter
        if m.gas_remaining < cost:
            raise _oog(m, cost, "MLOAD")
        m.gas_remaining -= cost
        v = c._stack.values
        if not v:
            raise InsufficientStack("Wanted 1 stack item, had none")
        start = v[-1]
        if start.__class__ is not int:
            start = _FROM(start, "big")
        end = start + 32
        mem = c._memory._bytes
        if end > len(mem):  # py-evm's path: expansion gas, then the memory grows
            c.extend_memory(start, 32)
            mem = c._memory._bytes
        v[-1] = _FROM(mem[start:end], "big")
    return mload


def _mstore(cost: int) -> Callable[[Any], None]:
    def mstore(c: Any) -> None:
        m = c._gas_meter
        if m.gas_remaining < cost:
            raise _oog(m, cost, "MSTORE")
        m.gas_remaining -= cost
        v = c._stack.values
        if len(v) < 2:
            raise InsufficientStack(f"Wanted 2 stack items, only had {len(v)}")
        start = v.pop()
        value = v.pop()
        if start.__class__ is not int:
            start = _FROM(start, "big")
        end = start + 32
        mem = c._memory._bytes
        if end > len(mem):
            c.extend_memory(start, 32)
            mem = c._memory._bytes
        mem[start:end] = value.to_bytes(32, "big") if value.__class__ is int else value.rjust(32, b"\x00")
    return mstore


def _calldataload(cost: int) -> Callable[[Any], None]:
    def calldataload(c: Any) -> None:
        m = c._gas_meter
        if m.gas_remaining < cost:
            raise _oog(m, cost, "CALLDATALOAD")
        m.gas_remaining -= cost
        v = c._stack.values
        if not v:
            raise InsufficientStack("Wanted 1 stack item, had none")
        start = v[-1]
        if start.__class__ is not int:
            start = _FROM(start, "big")
        word = bytes(c.msg.data[start:start + 32])
        v[-1] = _FROM(word.ljust(32, b"\x00"), "big")
    return calldataload


def fast_opcodes(stock: dict[int, Any]) -> dict[int, Any]:
    """A copy of py-evm's opcode table (opcode -> py-evm Opcode) with the hottest opcodes
    replaced; the constant gas is each stock opcode's own gas_cost."""
    table = dict(stock)

    def cost(op: int) -> int:
        return int(stock[op].gas_cost)

    for op, (mnemonic, fn) in _BINARY.items():
        table[op] = _binary(fn, cost(op), mnemonic)
    table[ov.ISZERO] = _iszero(cost(ov.ISZERO))
    if ov.PUSH0 in stock:
        table[ov.PUSH0] = _push0(cost(ov.PUSH0))
    for size in range(1, 33):
        op = ov.PUSH1 + size - 1
        table[op] = _push(size, cost(op))
    for n in range(1, 17):
        table[ov.DUP1 + n - 1] = _dup(n, cost(ov.DUP1 + n - 1))
        table[ov.SWAP1 + n - 1] = _swap(n, cost(ov.SWAP1 + n - 1))
    table[ov.POP] = _pop(cost(ov.POP))
    table[ov.JUMP] = _jump(cost(ov.JUMP))
    table[ov.JUMPI] = _jumpi(cost(ov.JUMPI))
    table[ov.JUMPDEST] = _jumpdest(cost(ov.JUMPDEST))
    table[ov.MLOAD] = _mload(cost(ov.MLOAD))
    table[ov.MSTORE] = _mstore(cost(ov.MSTORE))
    table[ov.CALLDATALOAD] = _calldataload(cost(ov.CALLDATALOAD))
    for op, fn in table.items():
        if fn is not stock[op] and not hasattr(fn, "mnemonic"):
            fn.mnemonic = stock[op].mnemonic
    return table
