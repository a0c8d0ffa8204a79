"""The ERC-7562 validation rules as a pure function: check(trace, context) -> [Violation].

Rule by rule (ids from the ERC's text):
  OP-011  banned opcodes: ORIGIN GASPRICE BLOCKHASH COINBASE TIMESTAMP NUMBER DIFFICULTY GASLIMIT
          BASEFEE BLOBHASH BLOBBASEFEE SELFDESTRUCT INVALID (and CREATE, see OP-032)
  OP-012  GAS only immediately before a *CALL
  OP-013  unassigned opcodes
  OP-020  no out-of-gas in any frame of a phase
  OP-031  CREATE2 once, in the factory phase, deploying the sender (by the factory or a helper)
  OP-032  with a factory (even unstaked) the sender itself may use CREATE
          (EREP-060: with a staked factory the factory or the sender may use CREATE and CREATE2;
          EREP-061: a staked factory may use a helper contract that calls CREATE)
  OP-041  no EXTCODE* or *CALL on an address without code;  OP-042  except the sender, from the
          factory phase (it is being deployed)
  OP-051  EXTCODESIZE of the EntryPoint followed by ISZERO;  OP-052  depositTo(sender) from the
          sender or the factory, any value;  OP-053  the EntryPoint's fallback from the sender,
          any value;  OP-054  any other access to the EntryPoint
  OP-061  CALL with value only to the EntryPoint;  OP-062  precompiles 0x01-0x09 only
  OP-070  TLOAD/TSTORE follow the storage rules
  OP-080  BALANCE/SELFBALANCE only from a staked entity
  STO-010 the sender's storage, always;  STO-021/022 storage associated with the sender in a
          non-entity contract: when the sender exists, or its factory is staked
  STO-031/032/033 a staked entity: its own storage, storage associated with it in non-entity
          contracts, read-only any storage of non-entity contracts
  STO-040 an address used as a sender by another op in the mempool may not be an entity of this
          op, and this op's sender may not be an entity of another op in the mempool
  STO-041 no storage access in a contract that is the sender of another op in the same bundle: a
          bundle-time rule (storage_touched() here, kept apart by the builder), never a reason to
          refuse an op at admission (the first to arrive would always win)
  EREP-050 an unstaked paymaster may not return a context

"Associated with A": the slot equals A, or keccak(A || x) + n with 0 <= n <= 128 where the
tracer saw that preimage (A as a 32-byte word, or packed as 20 bytes).

Staked: stake >= min_stake and unstake delay >= min_unstake_delay (the stake infos simulate-
Validation returned). A violation that staking would lift names the entity whose stake counts
(`needs_stake`): errors.py maps it to -32505 StakeTooLow when that entity has *some* stake that
is too low, and to -32502 OpcodeViolation (an unstaked entity broke a rule) otherwise.
"""
from __future__ import annotations

import bisect
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Mapping

from session_sdk.calldata import SEL_DEPOSIT_TO

from ...errors import BundlerError, OpcodeViolation, StakeTooLow
from ..results import NO_STAKE, StakeInfo, ValidationResult
from .trace import (
    BALANCE, CALL, CREATE, CREATE2, DELEGATECALL, DIFFICULTY, EXTCODESIZE, READ, SELFBALANCE, WRITE, PhaseTrace,
    Trace, opcode_name,
)

if TYPE_CHECKING:
    from ...userop.model import UserOperation

ASSOCIATED_RANGE = 128
ALLOWED_PRECOMPILES = frozenset((i).to_bytes(20, "big") for i in range(1, 10))
STAKED_ONLY_OPCODES = frozenset({BALANCE, SELFBALANCE})
PHASE_ORDER = ("factory", "account", "paymaster")


@dataclass(frozen=True)
class RuleContext:
    """Everything besides the trace the rules look at (plain data; addresses lower-case 0x)."""

    entry_point: str
    sender: str
    factory: str | None = None  # a deploying factory (not the EIP-7702 marker)
    paymaster: str | None = None
    sender_stake: StakeInfo = NO_STAKE
    factory_stake: StakeInfo = NO_STAKE
    paymaster_stake: StakeInfo = NO_STAKE
    min_stake: int = 10**18
    min_unstake_delay: int = 86_400
    # senders and entities (factories, paymasters) of the *other* ops in the mempool
    mempool_senders: frozenset[str] = frozenset()
    mempool_entities: frozenset[str] = frozenset()
    # what validatePaymasterUserOp returned as context (EREP-050)
    paymaster_context: bytes = b""

    @classmethod
    def for_op(cls, op: UserOperation, entry_point: str, result: ValidationResult | None = None, *,
               min_stake: int = 10**18, min_unstake_delay: int = 86_400, mempool_senders: Iterable[str] = (),
               mempool_entities: Iterable[str] = ()) -> "RuleContext":
        """From a UserOperation and its ValidationResult (stake infos)."""
        factory = op.deploying_factory.lower() if op.deploying_factory is not None else None
        sender = op.sender.lower()
        return cls(
            entry_point=entry_point.lower(),
            sender=sender,
            factory=factory,
            paymaster=op.paymaster.lower() if op.paymaster else None,
            sender_stake=result.sender_info if result is not None else NO_STAKE,
            factory_stake=result.factory_info if result is not None and factory else NO_STAKE,
            paymaster_stake=result.paymaster_info if result is not None and op.paymaster else NO_STAKE,
            min_stake=min_stake,
            min_unstake_delay=min_unstake_delay,
            mempool_senders=frozenset(a.lower() for a in mempool_senders) - {sender},
            mempool_entities=frozenset(a.lower() for a in mempool_entities),
            paymaster_context=bytes(getattr(result, "paymaster_context", b"") or b"") if op.paymaster else b"",
        )

    def stake_of(self, entity: str) -> StakeInfo:
        return {"account": self.sender_stake, "factory": self.factory_stake,
                "paymaster": self.paymaster_stake}.get(entity, NO_STAKE)

    def address_of(self, entity: str) -> str | None:
        return {"account": self.sender, "factory": self.factory, "paymaster": self.paymaster}.get(entity)

    def is_staked(self, entity: str) -> bool:
        if self.address_of(entity) is None:
            return False
        return self.stake_of(entity).is_staked(self.min_stake, self.min_unstake_delay)


@dataclass(frozen=True)
class Violation:
    rule: str  # "OP-011", "STO-021", ...
    entity: str  # phase that broke it: "factory" | "account" | "paymaster"
    message: str
    # the entity whose stake would lift the violation (None: not fixable by staking)
    needs_stake: str | None = None
    data: Mapping[str, str] = field(default_factory=dict)


def _hex(address: bytes) -> str:
    return "0x" + address.hex()


def _b(address: str | None) -> bytes | None:
    return bytes.fromhex(address[2:]) if address else None


class _Associations:
    """Is a slot associated with an address? (slot == A, or keccak(A||x) <= slot <= +128)."""

    def __init__(self, bases: Iterable[tuple[bytes, int]]):
        self._bases: dict[bytes, list[int]] = {}
        for address, base in bases:
            self._bases.setdefault(address, []).append(base)
        for v in self._bases.values():
            v.sort()

    def of(self, address: bytes | None, slot: int) -> bool:
        if address is None:
            return False
        if slot == int.from_bytes(address, "big"):
            return True
        bases = self._bases.get(address)
        if not bases:
            return False
        i = bisect.bisect_right(bases, slot)
        return i > 0 and slot - bases[i - 1] <= ASSOCIATED_RANGE


@dataclass(frozen=True, slots=True)
class CheckedTrace:
    """What is read of a trace once the rules passed it (what a pool entry keeps instead of the
    whole trace, about 2.6 KB): the rules checked on it again later see the same trace, the same
    stakes and the same paymaster context, so only the mempool rules (STO-040) can find something
    new. The bundle-time STO-041 needs the contracts whose storage it touched. Make it with
    `checked(trace, sender)` only from a trace that `check` passed."""

    # contracts other than the sender whose storage or transient storage any phase accessed,
    # lower-case "0x..." (interned: the same few contracts recur across ops)
    others_storage: tuple[str, ...] = ()


def checked(trace: Trace, sender: str) -> CheckedTrace:
    """The part of a trace `check` passed that later checks read (see CheckedTrace)."""
    others = storage_touched(trace) - {sender.lower()}
    return CheckedTrace(tuple(sorted(sys.intern(a) for a in others))) if others else _NOTHING_ELSE


_NOTHING_ELSE = CheckedTrace()


def check(trace: Trace | CheckedTrace, ctx: RuleContext) -> list[Violation]:
    """Every violation of the rules, the mempool rules (STO-040) first, then phase by phase in
    execution order. A CheckedTrace passed every rule but the mempool's already: only those run."""
    out: list[Violation] = []
    out += _check_mempool_entities(ctx)
    out += _check_paymaster_context(ctx)
    if isinstance(trace, CheckedTrace):
        return out
    assoc = _Associations(trace.keccak_bases)
    created_sender = False
    for name in PHASE_ORDER:
        phase = trace.phases.get(name)
        if phase is None:
            continue
        out += _check_opcodes(phase, ctx)
        found, created_sender = _check_creates(phase, ctx, created_sender)
        out += found
        out += _check_calls(phase, ctx)
        out += _check_code_access(phase, ctx)
        out += _check_storage(phase, ctx, assoc)
    return out


# -- STO-040 --
def _check_mempool_entities(ctx: RuleContext) -> list[Violation]:
    out = []
    for role in ("factory", "paymaster"):
        address = ctx.address_of(role)
        if address and address in ctx.mempool_senders:
            out.append(Violation(
                "STO-040", role,
                f"A {role} at {address} in this UserOperation is used as a sender entity in another "
                f"UserOperation currently in mempool",
                data={role: address},
            ))
    if ctx.sender in ctx.mempool_entities:
        out.append(Violation(
            "STO-040", "account",
            f"The sender address {ctx.sender} is used as a different entity in another "
            f"UserOperation currently in mempool",
            data={"sender": ctx.sender},
        ))
    return out


# -- EREP-050 --
def _check_paymaster_context(ctx: RuleContext) -> list[Violation]:
    if not ctx.paymaster or not ctx.paymaster_context or ctx.is_staked("paymaster"):
        return []
    stake = ctx.stake_of("paymaster")
    who = "paymaster" if stake.stake or stake.unstake_delay_sec else "unstaked paymaster"
    return [Violation(
        "EREP-050", "paymaster",
        f"{who} {ctx.paymaster} returned a context of {len(ctx.paymaster_context)} bytes from "
        f"validatePaymasterUserOp (only a staked paymaster may: its postOp runs with it)",
        needs_stake="paymaster", data={"paymaster": ctx.paymaster},
    )]


def storage_touched(trace: Trace | CheckedTrace) -> frozenset[str]:
    """Every contract ("0x..." lower-case) whose storage or transient storage any phase of the
    validation accessed (STO-041 at bundle time: no op may touch the storage of another op's
    sender in the same bundle); of a CheckedTrace, those other than the sender."""
    if isinstance(trace, CheckedTrace):
        return frozenset(trace.others_storage)
    out: set[str] = set()
    for phase in trace.phases.values():
        out.update(_hex(a) for a in phase.storage)
        out.update(_hex(a) for a in phase.transient)
    return frozenset(out)


# -- opcodes: OP-011, OP-012, OP-013, OP-020, OP-080 --
def _check_opcodes(phase: PhaseTrace, ctx: RuleContext) -> list[Violation]:
    out = []
    entity = phase.entity
    for opcode, where in phase.opcodes.items():
        name = opcode_name(opcode)
        if opcode in STAKED_ONLY_OPCODES:
            if not ctx.is_staked(entity):
                out.append(Violation(
                    "OP-080", entity,
                    f"{entity} uses banned opcode: {name} (in {_hex(where)}; "
                    f"only a staked {entity} may use it)",
                    needs_stake=entity,
                ))
            continue
        alias = " (PREVRANDAO)" if opcode == DIFFICULTY else ""
        out.append(Violation("OP-011", entity, f"{entity} uses banned opcode: {name}{alias} (in {_hex(where)})"))
    for where, opcode in phase.invalid:
        rule = "OP-011" if opcode == 0xFE else "OP-013"
        out.append(Violation(rule, entity, f"{entity} uses banned opcode: {opcode_name(opcode)} (in {_hex(where)})"))
    if phase.gas_misuse is not None:
        out.append(Violation(
            "OP-012", entity,
            f"{entity} uses banned opcode: GAS (in {_hex(phase.gas_misuse)}; GAS is allowed only "
            f"immediately before a *CALL)",
        ))
    for where in phase.out_of_gas[:1]:
        out.append(Violation(
            "OP-020", entity,
            f"{entity} ran out of gas in a call to {_hex(where)} (an out-of-gas revert during "
            f"validation is forbidden: it depends on the gas given)",
        ))
    return out


# -- contract creation: OP-011 (CREATE), OP-031, OP-032, EREP-060/061 --
def _check_creates(phase: PhaseTrace, ctx: RuleContext, created_sender: bool) -> tuple[list[Violation], bool]:
    out = []
    entity = phase.entity
    sender = _b(ctx.sender)
    factory = _b(ctx.factory)
    factory_staked = ctx.is_staked("factory")
    for rec in phase.creates:
        name = opcode_name(rec.opcode)
        if rec.opcode == CREATE2 and entity == "factory" and rec.created == sender and not created_sender:
            created_sender = True  # OP-031
            continue
        if factory is not None and rec.creator == sender and (rec.opcode == CREATE or factory_staked):
            continue  # OP-032 / EREP-060 (the sender itself)
        if factory_staked and rec.creator == factory:
            continue  # EREP-060 (the factory itself)
        if factory_staked and entity == "factory" and rec.opcode == CREATE:
            continue  # EREP-061 (a helper of a staked factory)
        if rec.opcode == CREATE2 and entity == "factory":
            why = "CREATE2 may deploy only the sender, once (OP-031)"
        elif factory is None:
            why = "an op without a factory may not create contracts"
        else:
            why = (f"only the sender may use CREATE, and CREATE2 only with a staked factory "
                   f"(OP-032, EREP-060)")
        out.append(Violation(
            "OP-031" if rec.opcode == CREATE2 else "OP-032", entity,
            f"{entity} uses banned opcode: {name} (by {_hex(rec.creator)}; {why})",
            needs_stake="factory" if factory is not None and not factory_staked else None,
        ))
    return out, created_sender


# -- calls: OP-041/042 (calls), OP-052..054, OP-061, OP-062 --
def _check_calls(phase: PhaseTrace, ctx: RuleContext) -> list[Violation]:
    out = []
    entity = phase.entity
    ep = _b(ctx.entry_point)
    sender = _b(ctx.sender)
    for call in phase.calls:
        kind = opcode_name(call.kind)
        if call.target == ep:
            sel = call.data[:4]
            if call.kind == CALL and sel == SEL_DEPOSIT_TO and entity in ("account", "factory") \
                    and call.data[16:36] == sender:
                continue  # OP-052
            if call.kind == CALL and call.data_len == 0 and call.caller == sender:
                # OP-053, in any phase: the sender's own constructor runs at the sender's address
                # during the factory phase (an account that pre-funds itself). Only the sender:
                # a fallback call from another contract credits a deposit to that contract,
                # which the ERC's text does not allow (docs/safe-mode.md)
                continue
            what = "its fallback" if call.data_len == 0 else f"selector 0x{sel.hex()}"
            out.append(Violation(
                "OP-054", entity,
                f"{entity} calls the EntryPoint ({kind} to {what}); only depositTo(sender) from the "
                f"sender or factory and the sender's plain value transfer are allowed",
            ))
            continue
        if call.precompile:
            if call.target not in ALLOWED_PRECOMPILES:
                out.append(Violation(
                    "OP-062", entity,
                    f"{entity} calls precompile {_hex(call.target)}; only 0x01-0x09 are allowed",
                ))
            continue
        if not call.has_code and not (entity == "factory" and call.target == sender):
            out.append(Violation(
                "OP-041", entity,
                f"{entity} accesses un-deployed contract address {_hex(call.target)} with {kind} "
                f"(from {_hex(call.caller)})",
            ))
            continue
        if call.value and call.kind != DELEGATECALL:
            out.append(Violation(
                "OP-061", entity,
                f"{entity} calls {_hex(call.target)} with value {call.value} (only the EntryPoint "
                f"may receive value during validation)",
            ))
    return out


# -- EXTCODE*: OP-041/042, OP-051, OP-054 --
def _check_code_access(phase: PhaseTrace, ctx: RuleContext) -> list[Violation]:
    out = []
    entity = phase.entity
    ep = _b(ctx.entry_point)
    sender = _b(ctx.sender)
    for acc in phase.code_access:
        name = opcode_name(acc.opcode)
        if acc.target == ep:
            if acc.opcode == EXTCODESIZE and acc.then_iszero:
                continue  # OP-051
            out.append(Violation(
                "OP-054", entity,
                f"{entity} uses {name} on the EntryPoint (only EXTCODESIZE followed by ISZERO is allowed)",
            ))
            continue
        if not acc.has_code and not (entity == "factory" and acc.target == sender):
            out.append(Violation(
                "OP-041", entity,
                f"{entity} accesses un-deployed contract address {_hex(acc.target)} with {name} "
                f"(from {_hex(acc.caller)})",
            ))
    return out


# -- storage: STO-010, STO-021/022, STO-031/032/033, OP-070 --
def _check_storage(phase: PhaseTrace, ctx: RuleContext, assoc: _Associations) -> list[Violation]:
    out = []
    for transient, table in ((False, phase.storage), (True, phase.transient)):
        for address, slots in table.items():
            for slot, access in slots.items():
                v = _storage_violation(phase.entity, address, slot, access, transient, ctx, assoc)
                if v is not None:
                    out.append(v)
                    break  # one per contract is enough
    return out


def _storage_violation(entity: str, address: bytes, slot: int, access: int, transient: bool,
                       ctx: RuleContext, assoc: _Associations) -> Violation | None:
    sender = _b(ctx.sender)
    entity_address = _b(ctx.address_of(entity))
    entities = {a for a in (sender, _b(ctx.factory), _b(ctx.paymaster)) if a is not None}
    staked = ctx.is_staked(entity)
    where = f"{'transient storage' if transient else 'storage'} of {_hex(address)} slot {hex(slot)}"
    data = {"address": _hex(address), "slot": hex(slot)}
    stake = ctx.stake_of(entity)
    # "unstaked" when it has no stake at all (a stake below the minimum is -32505, said there)
    who = entity if staked or stake.stake or stake.unstake_delay_sec else f"unstaked {entity}"

    if address == sender:
        return None  # STO-010
    if address == entity_address:
        if staked:
            return None  # STO-031
        return Violation(
            "STO-031", entity,
            f"{who} accessed its own {where} (only a staked {entity} may)",
            needs_stake=entity, data=data,
        )
    if address in entities:
        return Violation(
            "STO-031", entity,
            f"{entity} accessed {where}, which belongs to another entity of this UserOperation",
            data=data,
        )
    if assoc.of(sender, slot):
        if ctx.factory is None or ctx.is_staked("factory"):
            return None  # STO-021 / STO-022
        if staked and not access & WRITE:
            return None  # STO-033: a staked entity may read any storage, also while the sender is deployed
        return Violation(
            "STO-022", entity,
            f"{entity} accessed {where}, associated with the sender before the sender is deployed "
            f"(allowed only with a staked factory)",
            needs_stake="factory", data=data,
        )
    if entity != "account" and assoc.of(entity_address, slot):
        if staked:
            return None  # STO-032
        return Violation(
            "STO-032", entity,
            f"{who} accessed {where}, associated with the {entity} (only a staked "
            f"{entity} may)",
            needs_stake=entity, data=data,
        )
    if not access & WRITE:
        if staked:
            return None  # STO-033
        return Violation(
            "STO-033", entity,
            f"{entity} accessed {where} (not associated with the sender)",
            needs_stake=entity, data=data,
        )
    return Violation(
        "STO-033", entity,
        f"{entity} accessed {where} (not associated with the sender)"
        + (f"; a staked {entity} may only read it" if staked else ""),
        data=data,
    )


def violation_error(v: Violation, ctx: RuleContext) -> BundlerError:
    """The ERC-7769 error for a violation: -32505 when staking would lift it and the entity has a
    stake that is too low, -32502 otherwise."""
    data: dict[str, object] = {"rule": v.rule, "entity": v.entity, **v.data}
    if v.needs_stake:
        stake = ctx.stake_of(v.needs_stake)
        address = ctx.address_of(v.needs_stake)
        if stake.stake > 0 or stake.unstake_delay_sec > 0:
            return StakeTooLow(
                f"{v.message}: the {v.needs_stake} {address} has stake {stake.stake} wei and unstake "
                f"delay {stake.unstake_delay_sec} s, below this bundler's minimum {ctx.min_stake} wei "
                f"and {ctx.min_unstake_delay} s",
                {**data, v.needs_stake: address, "stake": hex(stake.stake),
                 "unstakeDelaySec": stake.unstake_delay_sec, "minimumStake": hex(ctx.min_stake),
                 "minimumUnstakeDelay": ctx.min_unstake_delay},
            )
        data[v.needs_stake] = address
    return OpcodeViolation(v.message, data)


__all__ = ["CheckedTrace", "RuleContext", "Violation", "check", "checked", "storage_touched", "violation_error", "READ", "WRITE"]
