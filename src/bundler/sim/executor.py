"""Run message calls and transactions in py-evm's Prague VM against an OverlayAccountDB.

SimComputation is Prague with a leaner interpreter loop (256-entry dispatch list, constant
gas charged inline) and jump-destination analysis shared per code object; same semantics,
about 25% faster on EntryPoint validation.

The tracer hook (for the ERC-7562 rules) costs nothing when unused. With a tracer, a
Computation subclass is built (once per set of hooked opcodes) whose dispatch table wraps
only the opcodes the tracer asks for, and whose apply_child_computation reports call frames
(a CALL that fails before creating a frame, e.g. for lack of balance, reports none).
Measured with every opcode an ERC-7562 tracer needs hooked by a do-nothing tracer: ~1%.
"""
from __future__ import annotations

import os
from typing import Any, Iterable, Protocol, Sequence, cast

from eth._utils.address import generate_contract_address
from eth.abc import ComputationAPI, MessageAPI
from eth.constants import CREATE_CONTRACT_ADDRESS
from eth.exceptions import Halt, OutOfGas
from eth.vm.forks.cancun.transaction_context import CancunTransactionContext
from eth.vm.forks.prague.computation import PragueComputation
from eth.vm.forks.prague.state import PragueState
from eth.vm.logic.invalid import InvalidOpcode
from eth.vm.message import Message
from eth.vm.opcode import _FastOpcode
from eth_typing import Address, BlockNumber, Hash32
from eth.vm.opcode_values import (
    BALANCE, BASEFEE, BLOBBASEFEE, BLOBHASH, BLOCKHASH, CALL, CALLCODE, COINBASE, CREATE, CREATE2,
    DELEGATECALL, DIFFICULTY, EXTCODECOPY, EXTCODEHASH, EXTCODESIZE, GAS, GASLIMIT, GASPRICE,
    NUMBER, ORIGIN, SELFBALANCE, SELFDESTRUCT, SHA3, SLOAD, SSTORE, STATICCALL, TIMESTAMP,
    TLOAD, TSTORE,
)

from .fastops import fast_opcodes
from .readset import WatchedExecutionContext
from .state import OverlayAccountDB
from .types import BlockContext, CallResult

DELEGATION_PREFIX = b"\xef\x01\x00"
G_TX = 21_000
G_TX_CREATE = 32_000
G_DATA_ZERO = 4
G_DATA_NONZERO = 16
G_INITCODE_WORD = 2
FLOOR_PER_TOKEN = 10  # EIP-7623
MAX_REFUND_QUOTIENT = 5  # EIP-3529

# What an ERC-7562 tracer needs to see: forbidden opcodes, storage, hashing (for mapping
# slots), code access, calls, creates. (INVALID/0xfe is not in py-evm's table: a frame
# ending with InvalidInstruction shows it in on_exit.)
ERC7562_OPCODES: frozenset[int] = frozenset({
    GASPRICE, GASLIMIT, DIFFICULTY, TIMESTAMP, BASEFEE, BLOCKHASH, NUMBER, SELFBALANCE, BALANCE,
    ORIGIN, GAS, CREATE, COINBASE, SELFDESTRUCT, BLOBHASH, BLOBBASEFEE,
    SLOAD, SSTORE, TLOAD, TSTORE, SHA3, EXTCODESIZE, EXTCODECOPY, EXTCODEHASH,
    CALL, CALLCODE, DELEGATECALL, STATICCALL, CREATE2,
})


class Tracer(Protocol):
    """Observer of one execution. All hooks run synchronously inside the interpreter.

    opcodes     which opcodes on_opcode is called for (before the opcode runs, with the
                stack and memory as the opcode will see them); the rest run unwrapped.
    on_enter    a call frame starts (message: to, sender, value, data, gas, depth,
                is_static, code_address; parent is None for the top-level frame).
    on_exit     a call frame ended (computation.is_error, .output, .get_gas_used(), ...).
    """

    opcodes: frozenset[int]

    def on_enter(self, message: MessageAPI, parent: ComputationAPI | None) -> None: ...

    def on_exit(self, message: MessageAPI, computation: ComputationAPI) -> None: ...

    def on_opcode(self, opcode: int, computation: ComputationAPI) -> None: ...


class NoopTracer:
    """Hooks everything an ERC-7562 tracer would hook and does nothing (overhead baseline)."""

    def __init__(self, opcodes: Iterable[int] = ERC7562_OPCODES):
        self.opcodes = frozenset(opcodes)

    def on_enter(self, message: MessageAPI, parent: ComputationAPI | None) -> None:
        pass

    def on_exit(self, message: MessageAPI, computation: ComputationAPI) -> None:
        pass

    def on_opcode(self, opcode: int, computation: ComputationAPI) -> None:
        pass


# -- stack/memory helpers for tracers (py-evm keeps ints and bytes mixed on the stack) --
def stack_peek_int(computation: ComputationAPI, depth: int = 0) -> int:
    value = computation._stack.values[-1 - depth]  # type: ignore[attr-defined]  # py-evm's Stack, not StackAPI
    return value if isinstance(value, int) else int.from_bytes(value, "big")


def memory_peek(computation: ComputationAPI, start: int, size: int) -> bytes:
    if size == 0:
        return b""
    memory = computation._memory._bytes  # type: ignore[attr-defined]  # py-evm's Memory: a bytearray
    return bytes(memory[start:start + size]).ljust(size, b"\x00")


# -- computations --
# code -> (valid jump positions, invalid ones, PUSH immediates by position): analysis shared by
# every frame running the same code
_JUMP_CACHE: dict[bytes, tuple[set, set, dict]] = {}

# BUNDLER_SIM_STOCK_OPCODES=1: py-evm's own implementations of the opcodes sim/fastops.py
# replaces (for A/B measurements and the differential test, which also flips this at run time)
STOCK_OPCODES = os.environ.get("BUNDLER_SIM_STOCK_OPCODES", "") == "1"


def _fast_opcode(op: Any) -> Any:
    """py-evm's _FastOpcode charges its constant gas through two method calls
    (computation.consume_gas -> GasMeter.consume_gas); do it inline."""
    if not isinstance(op, _FastOpcode):
        return op
    logic_fn, cost, mnemonic = op.logic_fn, op.gas_cost, op.mnemonic
    if cost == 0:
        return logic_fn

    def charged(computation, _fn=logic_fn, _cost=cost):
        meter = computation._gas_meter
        if meter.gas_remaining < _cost:
            raise OutOfGas(f"Out of gas: needed {_cost} - remaining {meter.gas_remaining} - {mnemonic}")
        meter.gas_remaining -= _cost
        return _fn(computation)

    charged.mnemonic = mnemonic  # type: ignore[attr-defined]
    return charged


# stack position of the value a CALL-family / CREATE opcode moves (None: it never moves one)
_VALUE_AT = {0xF0: 0, 0xF1: 2, 0xF2: 2, 0xF4: None, 0xF5: 0, 0xFA: None}


def _value_blind(op: Any, value_at: int | None) -> Any:
    """py-evm's CALL family and CREATEs read the caller's balance before they run, also when they
    move no value and the balance decides nothing. Such a read is not an observation of the balance
    (sim/readset.py: otherwise every validation would depend on the EntryPoint's balance, which
    every bundle changes)."""
    def call(computation, _op=op):
        values = computation._stack.values
        if value_at is not None and (len(values) <= value_at or stack_peek_int(computation, value_at)):
            return _op(computation)
        db = computation.state._account_db
        db.blind_balance_read = computation.msg.storage_address
        try:
            return _op(computation)
        finally:
            db.blind_balance_read = None

    call.mnemonic = op.mnemonic  # type: ignore[attr-defined]
    call.gas_cost = getattr(op, "gas_cost", None)  # type: ignore[attr-defined]
    return call


def _dispatch_table(opcodes: dict[int, Any]) -> list:
    """opcode -> callable, as a 256-entry list (indexing beats dict lookup + KeyError)."""
    return [opcodes[i] if i in opcodes else InvalidOpcode(i) for i in range(256)]


def _sim_opcodes(stock: bool) -> dict[int, Any]:
    base = dict(PragueComputation.opcodes) if stock else fast_opcodes(PragueComputation.opcodes)
    return {op: _value_blind(fn, _VALUE_AT[op]) if op in _VALUE_AT else _fast_opcode(fn)
            for op, fn in base.items()}


class SimComputation(PragueComputation):
    """Prague computation with a leaner interpreter loop (same semantics), the hottest opcodes
    specialised (sim/fastops.py) and code analysis shared per code object."""

    opcodes = _sim_opcodes(stock=False)
    _dispatch: list = _dispatch_table(opcodes)

    _push_values: dict[int, int]  # PUSH immediates by position (read by sim/fastops.py's PUSHes)

    def __init__(self, state, message, transaction_context) -> None:
        super().__init__(state, message, transaction_context)
        code = message.code
        if len(code) > 64:
            cached = _JUMP_CACHE.get(code)
            if cached is None:
                if len(_JUMP_CACHE) > 2048:
                    _JUMP_CACHE.clear()
                cached = _JUMP_CACHE[code] = (set(), set(), {})
            # py-evm's CodeStream keeps its jump analysis in these two (CodeStreamAPI does not name them)
            self.code.valid_positions, self.code.invalid_positions, self._push_values = cached  # type: ignore[attr-defined]
        else:
            self._push_values = {}

    @classmethod
    def apply_computation(cls, state, message, transaction_context, parent_computation=None):
        with cls(state, message, transaction_context) as computation:
            if parent_computation is None:
                computation.contracts_created = []
                if message.is_create:
                    cls.consume_initcode_gas_cost(computation)
            else:
                computation.contracts_created = parent_computation.contracts_created
            if message.is_create:
                computation.contracts_created.append(message.storage_address)

            precompile = computation.precompiles.get(message.code_address)
            if precompile is not None:
                if not message.is_delegation:
                    precompile(computation)
                return computation

            table = cls._dispatch
            stream = computation.code
            raw = stream._raw_code_bytes
            size = len(raw)
            try:
                while True:
                    pc = stream.program_counter
                    if pc >= size:
                        break  # running off the end is STOP
                    stream.program_counter = pc + 1
                    table[raw[pc]](computation)
            except Halt:
                pass
        return computation


class StockSimComputation(SimComputation):
    """SimComputation with py-evm's own opcode implementations (the A/B and differential baseline)."""

    opcodes = _sim_opcodes(stock=True)
    _dispatch: list = _dispatch_table(opcodes)


class _HookedOpcode:
    __slots__ = ("opcode", "fn", "mnemonic", "gas_cost")

    def __init__(self, opcode: int, fn: Any):
        self.opcode = opcode
        self.fn = fn
        self.mnemonic = getattr(fn, "mnemonic", None)
        self.gas_cost = getattr(fn, "gas_cost", None)

    def __call__(self, computation: ComputationAPI) -> None:
        computation.state.tracer.on_opcode(self.opcode, computation)  # type: ignore[attr-defined]  # a SimState
        return self.fn(computation)


def _hooked_table(opcodes: frozenset[int], base: type[SimComputation]) -> dict[int, Any]:
    table: dict[int, Any] = dict(base.opcodes)
    for op in opcodes:
        if op in table:
            table[op] = _HookedOpcode(op, table[op])
    return table


class _Traced:
    """Mixed in before a SimComputation class: reports call frames to the tracer."""

    def apply_child_computation(self, child_msg: MessageAPI) -> ComputationAPI:
        tracer = self.state.tracer  # type: ignore[attr-defined]  # always a SimState
        tracer.on_enter(child_msg, self)
        child = super().apply_child_computation(child_msg)  # type: ignore[misc]  # a SimComputation's
        tracer.on_exit(child_msg, child)
        return child


_TRACED_CLASSES: dict[tuple[frozenset[int], type], type[SimComputation]] = {}


def traced_computation_class(opcodes: frozenset[int],
                             base: type[SimComputation] = SimComputation) -> type[SimComputation]:
    cls = _TRACED_CLASSES.get((opcodes, base))
    if cls is None:
        table = _hooked_table(opcodes, base)
        cls = type(
            f"Traced{base.__name__}{len(_TRACED_CLASSES)}",
            (_Traced, base),
            {"opcodes": table, "_dispatch": _dispatch_table(table)},
        )
        _TRACED_CLASSES[(opcodes, base)] = cls
    return cls


def computation_class(tracer: Tracer | None) -> type[SimComputation]:
    base = StockSimComputation if STOCK_OPCODES else SimComputation
    return base if tracer is None else traced_computation_class(frozenset(tracer.opcodes), base)


# -- state --
class SimState(PragueState):
    """PragueState over an OverlayAccountDB; no trie, no system-contract setup."""

    execution_context: WatchedExecutionContext  # notes a read of the block context (sim/readset.py)
    _account_db: OverlayAccountDB

    def __init__(self, account_db: OverlayAccountDB, execution_context: WatchedExecutionContext,
                 tracer: Tracer | None = None) -> None:
        self._db = None  # type: ignore[assignment]  # no trie database: the overlay answers every read
        self.execution_context = execution_context
        self._account_db = account_db
        self.tracer = tracer
        self.computation_class = computation_class(tracer)

    def delta_balance(self, address: Address, delta: int) -> None:
        # not get_balance + set_balance: a value paid in is not an observation of the balance
        self._account_db.delta_balance(address, delta)


def execution_context(ctx: BlockContext) -> WatchedExecutionContext:
    # watched: a validation that read the block context cannot be reused at another block
    return WatchedExecutionContext(
        coinbase=Address(ctx.coinbase),
        timestamp=ctx.timestamp,
        block_number=BlockNumber(ctx.number),
        difficulty=0,
        mix_hash=Hash32(ctx.prev_randao),
        gas_limit=ctx.gas_limit,
        prev_hashes=cast(tuple[Hash32, ...], ctx.prev_hashes),
        chain_id=ctx.chain_id,
        base_fee_per_gas=ctx.base_fee,
        excess_blob_gas=0,
    )


def intrinsic_gas(data: bytes, is_create: bool = False) -> int:
    zeros = data.count(0)
    gas = G_TX + zeros * G_DATA_ZERO + (len(data) - zeros) * G_DATA_NONZERO
    if is_create:
        gas += G_TX_CREATE + G_INITCODE_WORD * ((len(data) + 31) // 32)
    return gas


def calldata_floor_gas(data: bytes) -> int:
    zeros = data.count(0)
    return G_TX + FLOOR_PER_TOKEN * (zeros + 4 * (len(data) - zeros))


def _addr(address: str | bytes | None) -> Address:
    if address is None:
        return CREATE_CONTRACT_ADDRESS
    if isinstance(address, bytes):
        return Address(address)
    return Address(bytes.fromhex(address[2:]))


class EvmSession:
    """A sequence of calls/transactions on one overlay of one block's state.

    State written by one call is seen by the next (like transactions in a block); each call
    ends like a transaction (access lists and transient storage reset).
    """

    def __init__(self, account_db: OverlayAccountDB, block: BlockContext, tracer: Tracer | None = None):
        self.db = account_db
        self.block = block
        self.state = SimState(account_db, execution_context(block), tracer)

    @property
    def tracer(self) -> Tracer | None:
        return self.state.tracer

    def set_tracer(self, tracer: Tracer | None) -> None:
        self.state.tracer = tracer
        self.state.computation_class = computation_class(tracer)

    def call(
        self,
        *,
        sender: str | bytes,
        to: str | bytes | None,
        data: bytes = b"",
        value: int = 0,
        gas: int = 30_000_000,
        origin: str | bytes | None = None,
        gas_price: int = 0,
        transaction: bool = False,
        charge_fees: bool = True,
        access_list: Sequence[tuple[bytes, Sequence[int]]] = (),
    ) -> CallResult:
        """Run one call like a transaction's top frame (intrinsic gas, warm sender/target,
        refunds, EIP-7623 floor). With transaction=True the sender's nonce is increased and,
        unless charge_fees=False, it must afford and pays gas * gas_price (the coinbase gets the
        priority part); otherwise it is an eth_call and no fee moves."""
        state = self.state
        sender_b = _addr(sender)
        to_b = _addr(to)
        is_create = to_b == CREATE_CONTRACT_ADDRESS
        intrinsic = intrinsic_gas(data, is_create)
        for _, slots in access_list:
            intrinsic += 2400 + 1900 * len(slots)
        if gas < intrinsic:
            return CallResult(False, b"", gas, error="IntrinsicGasTooLow")
        tx_ctx = CancunTransactionContext(gas_price=gas_price, origin=_addr(origin) if origin else sender_b)

        charge = transaction and charge_fees and gas_price > 0
        if charge:
            if state.get_balance(sender_b) < gas * gas_price + value:
                return CallResult(False, b"", 0, error="InsufficientFundsForGas")
            state.delta_balance(sender_b, -gas * gas_price)
        # the account the message runs in: the new contract's for a create
        target = to_b
        if is_create:
            nonce = state.get_nonce(sender_b)
            target = generate_contract_address(sender_b, nonce)
            code, is_delegation = data, False
            msg_data = b""
        else:
            code = state.get_code(to_b)
            is_delegation = code[:3] == DELEGATION_PREFIX and len(code) == 23
            if is_delegation:
                delegate = Address(code[3:])
                state.mark_address_warm(delegate)
                code = state.get_code(delegate)
            msg_data = data
        if transaction or is_create:
            state.increment_nonce(sender_b)

        state.mark_address_warm(sender_b)
        state.mark_address_warm(target)
        for address, slots in access_list:
            state.mark_address_warm(Address(address))
            for slot in slots:
                state.mark_storage_warm(Address(address), slot)

        message = Message(
            gas=gas - intrinsic,
            to=to_b,
            sender=sender_b,
            value=value,
            data=msg_data,
            code=code,
            create_address=target if is_create else None,  # type: ignore[arg-type]  # py-evm: None is its default
            is_delegation=is_delegation,
        )
        tracer = state.tracer
        if tracer is not None:
            tracer.on_enter(message, None)
        comp_cls = state.computation_class
        if is_create:
            if state.has_code_or_nonce(target):
                return CallResult(False, b"", gas, error="ContractCreationCollision")
            computation = comp_cls.apply_create_message(state, message, tx_ctx)
        else:
            computation = comp_cls.apply_message(state, message, tx_ctx)
        if tracer is not None:
            tracer.on_exit(message, computation)

        gas_remaining = computation.get_gas_remaining()
        used = gas - gas_remaining
        refund = min(computation.get_gas_refund(), used // MAX_REFUND_QUOTIENT)
        used = max(used - refund, calldata_floor_gas(data))

        if charge:
            state.delta_balance(sender_b, (gas - used) * gas_price)
            tip = max(gas_price - self.block.base_fee, 0)
            state.delta_balance(Address(self.block.coinbase), used * tip)
        for address in computation.get_accounts_for_deletion():
            state.delete_account(address)
        state.clear_transient_storage()
        state.lock_changes()

        if computation.is_success:
            output = target if is_create else computation.output
            return CallResult(True, output, used, self._logs(computation), refund=refund)
        error = computation.error
        return CallResult(False, computation.output, used, error=type(error).__name__)

    @staticmethod
    def _logs(computation: ComputationAPI) -> tuple:
        return tuple(
            ("0x" + address.hex(), tuple(topics), bytes(data))
            for address, topics, data in computation.get_log_entries()
        )
