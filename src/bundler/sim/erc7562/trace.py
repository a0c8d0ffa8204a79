"""What the ERC-7562 tracer reports (plain picklable data) and the recipe for a tracer: the part
of bundler.sim.erc7562 the main process uses, without py-evm (the tracer itself, tracer.py, runs
inside py-evm in the worker processes; importing py-evm cost the main process about 14 MB).

The opcode numbers are the EVM's (the Yellow Paper / execution-specs values);
tests/unit/test_erc7562_rules.py checks them against py-evm's eth.vm.opcode_values.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ...userop.model import UserOperation
    from .tracer import ValidationTracer

SHA3, BALANCE, ORIGIN, GASPRICE, EXTCODESIZE, EXTCODECOPY, EXTCODEHASH = 0x20, 0x31, 0x32, 0x3A, 0x3B, 0x3C, 0x3F
BLOCKHASH, COINBASE, TIMESTAMP, NUMBER, DIFFICULTY, GASLIMIT = 0x40, 0x41, 0x42, 0x43, 0x44, 0x45
SELFBALANCE, BASEFEE, BLOBHASH, BLOBBASEFEE = 0x47, 0x48, 0x49, 0x4A
ISZERO, SLOAD, SSTORE, GAS, TLOAD, TSTORE = 0x15, 0x54, 0x55, 0x5A, 0x5C, 0x5D
CREATE, CALL, CALLCODE, DELEGATECALL, CREATE2, STATICCALL, SELFDESTRUCT = 0xF0, 0xF1, 0xF2, 0xF4, 0xF5, 0xFA, 0xFF

# opcodes whose mere use is recorded (the rules decide: OP-011 banned, OP-080 staked only)
RECORDED_OPCODES: frozenset[int] = frozenset({
    GASPRICE, GASLIMIT, DIFFICULTY, TIMESTAMP, BASEFEE, BLOCKHASH, NUMBER, SELFBALANCE, BALANCE,
    ORIGIN, COINBASE, SELFDESTRUCT, BLOBHASH, BLOBBASEFEE,
})
CALL_OPCODES: frozenset[int] = frozenset({CALL, CALLCODE, DELEGATECALL, STATICCALL})
CREATE_OPCODES: frozenset[int] = frozenset({CREATE, CREATE2})

# 0x44 is named DIFFICULTY (its pre-Merge name; PREVRANDAO since): every tracer, compliance suite
# and client searches banned-opcode messages for that name.
OPCODE_NAMES: dict[int, str] = {
    GASPRICE: "GASPRICE", GASLIMIT: "GASLIMIT", DIFFICULTY: "DIFFICULTY", TIMESTAMP: "TIMESTAMP",
    BASEFEE: "BASEFEE", BLOCKHASH: "BLOCKHASH", NUMBER: "NUMBER", SELFBALANCE: "SELFBALANCE",
    BALANCE: "BALANCE", ORIGIN: "ORIGIN", COINBASE: "COINBASE", SELFDESTRUCT: "SELFDESTRUCT",
    BLOBHASH: "BLOBHASH", BLOBBASEFEE: "BLOBBASEFEE", GAS: "GAS", CREATE: "CREATE",
    CREATE2: "CREATE2", CALL: "CALL", CALLCODE: "CALLCODE", DELEGATECALL: "DELEGATECALL",
    STATICCALL: "STATICCALL", EXTCODESIZE: "EXTCODESIZE", EXTCODEHASH: "EXTCODEHASH",
    EXTCODECOPY: "EXTCODECOPY", SLOAD: "SLOAD", SSTORE: "SSTORE", TLOAD: "TLOAD", TSTORE: "TSTORE",
    0xFE: "INVALID",
}

READ = 1
WRITE = 2


def opcode_name(opcode: int) -> str:
    name = OPCODE_NAMES.get(opcode)
    return name if name is not None else f"unassigned opcode 0x{opcode:02x}"


@dataclass(slots=True)
class CallRecord:
    kind: int  # CALL, CALLCODE, DELEGATECALL, STATICCALL
    caller: bytes  # the contract whose code made the call (storage address of the frame)
    target: bytes  # the address named by the opcode (code address for DELEGATECALL/CALLCODE)
    value: int  # value transferred (0 for DELEGATECALL/STATICCALL)
    data: bytes  # first 36 bytes of calldata (selector + first word)
    data_len: int
    has_code: bool
    precompile: bool


@dataclass(slots=True)
class CodeAccess:
    opcode: int  # EXTCODESIZE, EXTCODEHASH, EXTCODECOPY
    caller: bytes
    target: bytes
    has_code: bool
    then_iszero: bool  # the next opcode is ISZERO (OP-051's pattern)


@dataclass(slots=True)
class CreateRecord:
    opcode: int  # CREATE or CREATE2
    creator: bytes
    created: bytes  # empty if no frame was opened (e.g. an address collision)


@dataclass(slots=True)
class PhaseTrace:
    entity: str  # "factory", "account", "paymaster"
    address: bytes  # the entity's address
    opcodes: dict[int, bytes] = field(default_factory=dict)  # opcode -> first contract using it
    gas_misuse: bytes | None = None  # contract that used GAS not followed by a *CALL
    storage: dict[bytes, dict[int, int]] = field(default_factory=dict)  # address -> slot -> READ|WRITE
    transient: dict[bytes, dict[int, int]] = field(default_factory=dict)
    calls: list[CallRecord] = field(default_factory=list)
    code_access: list[CodeAccess] = field(default_factory=list)
    creates: list[CreateRecord] = field(default_factory=list)
    out_of_gas: list[bytes] = field(default_factory=list)  # contracts whose frame ran out of gas
    invalid: list[tuple[bytes, int]] = field(default_factory=list)  # (contract, opcode) INVALID/unassigned


@dataclass(slots=True)
class Trace:
    """What ValidationTracer.report() returns (ValidationResult.trace)."""

    entry_point: bytes
    sender: bytes
    phases: dict[str, PhaseTrace]
    # (address, keccak(preimage)) for preimages starting with a watched address
    keccak_bases: tuple[tuple[bytes, int], ...]
    # "0x<address>" -> "0x<code hash>" of every contract whose code ran or was inspected in an
    # entity phase (the EntryPoint itself excluded)
    code_hashes: dict[str, str]



@dataclass(frozen=True)
class TracerFactory:
    """Picklable recipe for a ValidationTracer (built in the worker process)."""

    entry_point: str
    sender: str
    factory: str | None = None
    paymaster: str | None = None

    def __call__(self) -> "ValidationTracer":
        from .tracer import ValidationTracer  # py-evm: only the worker processes build tracers

        return ValidationTracer(self.entry_point, self.sender, self.factory, self.paymaster)

    @classmethod
    def for_op(cls, op: UserOperation, entry_point: str) -> "TracerFactory":
        factory = op.factory if op.deploys_account else None
        return cls(entry_point.lower(), op.sender.lower(), factory.lower() if factory else None,
                   op.paymaster.lower() if op.paymaster else None)
