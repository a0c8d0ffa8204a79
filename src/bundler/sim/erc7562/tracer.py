"""The ERC-7562 tracer: what each validation phase of one UserOperation did, collected inside
py-evm while simulateValidation runs.

Phases are told apart by the EntryPoint's own calls (the frames at depth 1 sent by the
EntryPoint): SenderCreator.createSender -> "factory", sender.validateUserOp -> "account",
paymaster.validatePaymasterUserOp -> "paymaster" (v0.8's SenderCreator.initEip7702Sender runs
the sender's code: "account"). Every frame below such a call belongs to that phase; the
EntryPoint's own code (the top frame, and EntryPoint frames an entity calls into, e.g. the
prefund payment) belongs to none and is not recorded.

Per phase it records: opcodes of interest (with the contract that ran them), GAS not followed
by a *CALL, storage and transient storage reads/writes per contract and slot, calls (kind,
caller, target, value, first calldata bytes, whether the target has code or is a precompile),
EXTCODE* accesses, CREATE/CREATE2 (creator and created address), out-of-gas frames and frames
that ended on INVALID or an unassigned opcode. Across phases: keccak preimages that start with
the sender/factory/paymaster address (to recognise associated storage) and the code hash of
every contract whose code ran or was inspected (COD-010).

Only the opcodes listed in `OPCODES` are hooked; everything else runs unwrapped. The report is
plain picklable data; the rules live in rules.py.
"""
from __future__ import annotations

from collections.abc import Callable

from eth.exceptions import InvalidInstruction, OutOfGas
from eth_hash.auto import keccak
from eth.abc import ComputationAPI, MessageAPI

from ..executor import ERC7562_OPCODES
from ..state import code_hash
from .trace import (  # noqa: F401  (the report's types and the factory, re-exported)
    BALANCE, BASEFEE, BLOBBASEFEE, BLOBHASH, BLOCKHASH, CALL, CALL_OPCODES, CALLCODE, COINBASE, CREATE,
    CREATE2, CREATE_OPCODES, DELEGATECALL, DIFFICULTY, EXTCODECOPY, EXTCODEHASH, EXTCODESIZE, GAS, GASLIMIT,
    GASPRICE, ISZERO, NUMBER, OPCODE_NAMES, ORIGIN, READ, RECORDED_OPCODES, SELFBALANCE, SELFDESTRUCT, SHA3,
    SLOAD, SSTORE, STATICCALL, TIMESTAMP, TLOAD, TSTORE, WRITE, CallRecord, CodeAccess, CreateRecord,
    PhaseTrace, Trace, TracerFactory, opcode_name,
)


# selectors the EntryPoint uses to enter each phase (same in v0.7 and v0.8)
SEL_CREATE_SENDER = keccak(b"createSender(bytes)")[:4]
SEL_INIT_EIP7702_SENDER = keccak(b"initEip7702Sender(address,bytes)")[:4]
_PACKED = "(address,uint256,bytes,bytes,bytes32,uint256,bytes32,bytes,bytes)"
SEL_VALIDATE_USER_OP = keccak(f"validateUserOp({_PACKED},bytes32,uint256)".encode())[:4]
SEL_VALIDATE_PAYMASTER_USER_OP = keccak(f"validatePaymasterUserOp({_PACKED},bytes32,uint256)".encode())[:4]

OPCODES: frozenset[int] = ERC7562_OPCODES

_ZERO12 = b"\x00" * 12
_ADDRESS_MASK = (1 << 160) - 1


class ValidationTracer:
    """Tracer (sim.executor protocol) for one simulateValidation run of one UserOperation."""

    opcodes = OPCODES

    __slots__ = (
        "_ep", "_sender", "_paymaster", "_watch", "_phase", "_stack", "_pending", "_phases",
        "_preimages", "_codes", "_handlers",
    )

    def __init__(self, entry_point: str, sender: str, factory: str | None = None,
                 paymaster: str | None = None):
        self._ep = bytes.fromhex(entry_point[2:])
        self._sender = bytes.fromhex(sender[2:])
        self._paymaster = bytes.fromhex(paymaster[2:]) if paymaster else None
        watch = {self._sender}
        if factory:
            watch.add(bytes.fromhex(factory[2:]))
        if self._paymaster:
            watch.add(self._paymaster)
        self._watch = frozenset(watch)
        self._phase: PhaseTrace | None = None  # None: EntryPoint code, not recorded
        self._stack: list[PhaseTrace | None] = []
        self._pending: int | None = None  # the call/create opcode that is about to open a frame
        self._phases: dict[str, PhaseTrace] = {}
        self._preimages: set[bytes] = set()
        self._codes: dict[bytes, bytes] = {}  # address -> code (for code hashes)
        h: dict[int, Callable] = {}
        self._handlers = h
        for op in RECORDED_OPCODES:
            h[op] = self._record_opcode
        h[SLOAD] = h[SSTORE] = self._storage
        h[TLOAD] = h[TSTORE] = self._transient
        h[SHA3] = self._sha3
        h[GAS] = self._gas
        h[EXTCODESIZE] = h[EXTCODEHASH] = h[EXTCODECOPY] = self._extcode
        for op in CALL_OPCODES:
            h[op] = self._call
        for op in CREATE_OPCODES:
            h[op] = self._create

    # -- frames --
    def _enter_phase(self, entity: str, address: bytes) -> PhaseTrace:
        phase = self._phases.get(entity)
        if phase is None:
            phase = self._phases[entity] = PhaseTrace(entity, address)
        return phase

    def on_enter(self, msg: MessageAPI, parent: ComputationAPI | None) -> None:
        pending, self._pending = self._pending, None
        phase = self._phase
        self._stack.append(phase)
        if parent is None:
            self._phase = None
            return
        if phase is None:
            # a frame opened by EntryPoint code: a phase starts only at the EntryPoint's own calls
            if msg.depth == 1 and msg.sender == self._ep:
                sel = msg.data[:4]
                if sel == SEL_CREATE_SENDER:
                    self._phase = self._enter_phase("factory", _factory_of(msg.data))
                elif sel == SEL_VALIDATE_USER_OP and msg.to == self._sender:
                    self._phase = self._enter_phase("account", self._sender)
                elif sel == SEL_VALIDATE_PAYMASTER_USER_OP and self._paymaster is not None and msg.to == self._paymaster:
                    self._phase = self._enter_phase("paymaster", self._paymaster)
                elif sel == SEL_INIT_EIP7702_SENDER:
                    self._phase = self._enter_phase("account", self._sender)
            if self._phase is not None:
                self._remember_code(msg)
            return
        if pending in CREATE_OPCODES:
            if phase.creates:
                phase.creates[-1].created = msg.storage_address
            return
        if msg.code_address == self._ep or msg.to == self._ep:
            self._phase = None  # the EntryPoint's own code (deposit, fallback): not an entity's
        elif msg.code:
            self._remember_code(msg)

    def on_exit(self, msg: MessageAPI, computation: ComputationAPI) -> None:
        phase = self._phase
        if phase is not None and computation.is_error:
            error = computation.error
            if isinstance(error, OutOfGas):
                phase.out_of_gas.append(msg.storage_address)
            elif isinstance(error, InvalidInstruction):
                stream = computation.code
                pc = stream.program_counter - 1
                raw = stream._raw_code_bytes  # type: ignore[attr-defined]  # py-evm's CodeStream keeps the code here
                op = raw[pc] if 0 <= pc < len(raw) else 0xFE
                phase.invalid.append((msg.storage_address, op))
        self._phase = self._stack.pop() if self._stack else None

    def _remember_code(self, msg) -> None:
        if not msg.is_create:
            address = msg.code_address
            if address not in self._codes:
                self._codes[address] = msg.code

    # -- opcodes --
    def on_opcode(self, opcode: int, computation: ComputationAPI) -> None:
        phase = self._phase
        if phase is not None:
            self._handlers[opcode](phase, opcode, computation)

    def _record_opcode(self, phase: PhaseTrace, opcode: int, c) -> None:
        if opcode not in phase.opcodes:
            phase.opcodes[opcode] = c.msg.storage_address

    def _storage(self, phase: PhaseTrace, opcode: int, c) -> None:
        self._access(phase.storage, opcode == SSTORE, c)

    def _transient(self, phase: PhaseTrace, opcode: int, c) -> None:
        self._access(phase.transient, opcode == TSTORE, c)

    @staticmethod
    def _access(table: dict, write: bool, c) -> None:
        values = c._stack.values
        if not values:
            return  # stack underflow: the opcode fails by itself
        slot = values[-1]
        if not isinstance(slot, int):
            slot = int.from_bytes(slot, "big")
        address = c.msg.storage_address
        slots = table.get(address)
        if slots is None:
            slots = table[address] = {}
        slots[slot] = slots.get(slot, 0) | (WRITE if write else READ)

    def _sha3(self, phase: PhaseTrace, opcode: int, c) -> None:
        values = c._stack.values
        if len(values) < 2:
            return
        start, size = values[-1], values[-2]
        if not isinstance(start, int):
            start = int.from_bytes(start, "big")
        if not isinstance(size, int):
            size = int.from_bytes(size, "big")
        if size < 20 or size > 4096:
            return
        mem = c._memory._bytes
        head = bytes(mem[start:start + 32])
        watch = self._watch
        if (head[:12] == _ZERO12 and head[12:32] in watch) or head[:20] in watch:
            pre = bytes(mem[start:start + size])
            self._preimages.add(pre.ljust(size, b"\x00"))

    def _gas(self, phase: PhaseTrace, opcode: int, c) -> None:
        stream = c.code
        raw = stream._raw_code_bytes
        pc = stream.program_counter  # already past GAS
        if (pc >= len(raw) or raw[pc] not in CALL_OPCODES) and phase.gas_misuse is None:
            phase.gas_misuse = c.msg.storage_address

    def _extcode(self, phase: PhaseTrace, opcode: int, c) -> None:
        values = c._stack.values
        if not values:
            return
        target = values[-1]
        if isinstance(target, int):
            target = (target & _ADDRESS_MASK).to_bytes(20, "big")
        else:
            target = target[-20:].rjust(20, b"\x00")
        code = c.state.get_code(target)
        if code and target != self._ep and target not in self._codes:
            self._codes[target] = code
        stream = c.code
        raw = stream._raw_code_bytes
        pc = stream.program_counter
        then_iszero = opcode == EXTCODESIZE and pc < len(raw) and raw[pc] == ISZERO
        phase.code_access.append(CodeAccess(opcode, c.msg.storage_address, target, bool(code), then_iszero))

    def _call(self, phase: PhaseTrace, opcode: int, c) -> None:
        # recorded here, not when the frame opens: a call that fails before opening one (e.g. a
        # value transfer without the balance) still counts
        self._pending = opcode
        values = c._stack.values
        with_value = opcode == CALL or opcode == CALLCODE
        if len(values) < (7 if with_value else 6):
            return
        words = [v if isinstance(v, int) else int.from_bytes(v, "big") for v in values[-7:]]
        words.reverse()  # top of the stack first: gas, address, [value,] in offset, in size, ...
        target = (words[1] & _ADDRESS_MASK).to_bytes(20, "big")
        if with_value:
            value, start, size = words[2], words[3], words[4]
        else:
            value, start, size = 0, words[2], words[3]
        head = bytes(c._memory._bytes[start:start + min(size, 36)]) if size else b""
        precompile = target in c.precompiles
        has_code = bool(c.state.get_code(target)) if not precompile else False
        phase.calls.append(CallRecord(opcode, c.msg.storage_address, target, value, head, size,
                                      has_code, precompile))

    def _create(self, phase: PhaseTrace, opcode: int, c) -> None:
        self._pending = opcode  # the created address is filled in when its frame opens
        phase.creates.append(CreateRecord(opcode, c.msg.storage_address, b""))

    # -- result --
    def report(self) -> Trace:
        bases = set()
        watch = self._watch
        for pre in self._preimages:
            h = int.from_bytes(keccak(pre), "big")
            if pre[:12] == _ZERO12 and pre[12:32] in watch:
                bases.add((pre[12:32], h))
            if pre[:20] in watch:
                bases.add((pre[:20], h))
        hashes = {
            "0x" + address.hex(): "0x" + code_hash(code).hex()
            for address, code in self._codes.items() if address != self._ep
        }
        return Trace(self._ep, self._sender, dict(self._phases), tuple(sorted(bases)), hashes)


def _factory_of(create_sender_data: bytes | memoryview) -> bytes:
    """The factory address inside createSender(bytes initCode)'s calldata (initCode[0:20])."""
    data = bytes(create_sender_data)
    # selector | offset (32) | length (32) | initCode...
    if len(data) >= 4 + 64 + 20:
        return data[68:88]
    return b"\x00" * 20
