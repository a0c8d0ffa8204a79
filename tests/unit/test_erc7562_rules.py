"""check(trace, context) on hand-made traces: the parts of the rules that are arithmetic or
bookkeeping (associated slots, staking thresholds, error codes, mempool sets, COD-010)."""
from __future__ import annotations

from eth_hash.auto import keccak

from bundler.errors import OpcodeViolation, StakeTooLow
from bundler.pool.safe import code_hash_change
from bundler.sim.erc7562 import PhaseTrace, RuleContext, Trace, check, storage_touched, violation_error
from bundler.sim.erc7562.tracer import READ, WRITE, CallRecord, CreateRecord
from bundler.sim.results import StakeInfo
from bundler.userop import UserOperation

EP = "0x" + "ee" * 20
SENDER = "0x" + "5e" * 20
PAYMASTER = "0x" + "9a" * 20
FACTORY = "0x" + "fa" * 20
TOKEN = "0x" + "70" * 20
STAKED = StakeInfo(10**18, 86_400)


def b(address: str) -> bytes:
    return bytes.fromhex(address[2:])


def word(n: int) -> bytes:
    return n.to_bytes(32, "big")


def trace(*phases: PhaseTrace, preimages: tuple[bytes, ...] = (), hashes=None) -> Trace:
    bases = []
    for pre in preimages:
        h = int.from_bytes(keccak(pre), "big")
        if pre[:12] == b"\x00" * 12:
            bases.append((pre[12:32], h))
        else:
            bases.append((pre[:20], h))
    return Trace(b(EP), b(SENDER), {p.entity: p for p in phases}, tuple(bases), hashes or {})


def ctx(**kw) -> RuleContext:
    values = dict(entry_point=EP, sender=SENDER, paymaster=PAYMASTER)
    values.update(kw)
    return RuleContext(**values)


def storage_phase(entity: str, address: str, contract: str, slot: int, access: int = READ) -> PhaseTrace:
    p = PhaseTrace(entity, b(address))
    p.storage[b(contract)] = {slot: access}
    return p


def mapping_slot(key: str, index: int) -> tuple[bytes, int]:
    pre = b(key).rjust(32, b"\x00") + word(index)
    return pre, int.from_bytes(keccak(pre), "big")


def test_associated_slot_range():
    pre, base = mapping_slot(SENDER, 3)
    for n, ok in ((0, True), (128, True), (129, False)):
        t = trace(storage_phase("account", SENDER, TOKEN, base + n, WRITE), preimages=(pre,))
        assert (check(t, ctx()) == []) is ok, n
    t = trace(storage_phase("account", SENDER, TOKEN, base - 1), preimages=(pre,))
    assert [v.rule for v in check(t, ctx())] == ["STO-033"]


def test_slot_equal_to_the_address_and_packed_preimage():
    t = trace(storage_phase("paymaster", PAYMASTER, TOKEN, int(SENDER, 16), WRITE))
    assert check(t, ctx()) == []
    packed = b(SENDER) + b"\x01\x02"
    h = int.from_bytes(keccak(packed), "big")
    t = trace(storage_phase("paymaster", PAYMASTER, TOKEN, h + 5, WRITE), preimages=(packed,))
    assert check(t, ctx()) == []


def test_sender_association_needs_a_staked_factory_while_deploying():
    pre, base = mapping_slot(SENDER, 0)
    t = trace(storage_phase("factory", FACTORY, TOKEN, base, WRITE), preimages=(pre,))
    [v] = check(t, ctx(factory=FACTORY))
    assert v.rule == "STO-022" and v.needs_stake == "factory"
    assert check(t, ctx(factory=FACTORY, factory_stake=STAKED)) == []


def test_unstaked_entity_storage_and_error_codes():
    t = trace(storage_phase("paymaster", PAYMASTER, PAYMASTER, 0))
    c = ctx()
    [v] = check(t, c)
    assert v.rule == "STO-031" and v.needs_stake == "paymaster"
    err = violation_error(v, c)
    assert isinstance(err, OpcodeViolation) and err.code == -32502
    assert err.data["paymaster"] == PAYMASTER and err.data["rule"] == "STO-031"
    low = ctx(paymaster_stake=StakeInfo(10**17, 86_400))
    err = violation_error(check(t, low)[0], low)
    assert isinstance(err, StakeTooLow) and err.code == -32505
    assert err.data["minimumStake"] == hex(10**18) and err.data["minimumUnstakeDelay"] == 86_400
    assert check(t, ctx(paymaster_stake=STAKED)) == []
    assert check(t, ctx(paymaster_stake=STAKED, min_stake=2 * 10**18))  # threshold is configurable


def test_staked_entity_may_read_but_not_write_foreign_storage():
    read = trace(storage_phase("paymaster", PAYMASTER, TOKEN, 7, READ))
    write = trace(storage_phase("paymaster", PAYMASTER, TOKEN, 7, READ | WRITE))
    staked = ctx(paymaster_stake=STAKED)
    assert check(read, staked) == []
    [v] = check(write, staked)
    assert v.needs_stake is None and "may only read" in v.message
    [v] = check(read, ctx())
    assert v.message == f"paymaster accessed storage of {TOKEN} slot 0x7 (not associated with the sender)"


def test_another_entity_storage_is_not_allowed_even_staked():
    t = trace(storage_phase("account", SENDER, PAYMASTER, 1))
    [v] = check(t, ctx(sender_stake=STAKED, paymaster_stake=STAKED))
    assert "belongs to another entity" in v.message


def test_mempool_rules():
    c = RuleContext.for_op(
        UserOperation(SENDER, 0, b"", 0, 0, 0, 0, 0, b"", paymaster=PAYMASTER), EP,
        mempool_senders={PAYMASTER, SENDER, TOKEN}, mempool_entities={SENDER},
    )
    assert SENDER not in c.mempool_senders  # the op's own sender never counts
    rules = [(v.rule, v.entity) for v in check(trace(), c)]
    assert rules == [("STO-040", "paymaster"), ("STO-040", "account")]
    # STO-041 is kept at bundle time (storage_touched + the builder), not refused here
    pre, base = mapping_slot(SENDER, 0)
    t = trace(storage_phase("account", SENDER, TOKEN, base, WRITE), preimages=(pre,))
    assert "STO-041" not in [v.rule for v in check(t, c)]
    assert storage_touched(t) == {TOKEN}


def test_creates():
    def create(entity, opcode, creator, created):
        p = PhaseTrace(entity, b(FACTORY if entity == "factory" else SENDER))
        p.creates.append(CreateRecord(opcode, b(creator), b(created)))
        return p

    deploy = create("factory", 0xF5, FACTORY, SENDER)
    assert check(trace(deploy), ctx(factory=FACTORY)) == []
    other = create("factory", 0xF5, FACTORY, TOKEN)
    assert [v.rule for v in check(trace(other), ctx(factory=FACTORY))] == ["OP-031"]
    assert check(trace(other), ctx(factory=FACTORY, factory_stake=STAKED)) == []
    by_sender = create("account", 0xF0, SENDER, TOKEN)
    assert check(trace(by_sender), ctx(factory=FACTORY)) == []
    assert [v.rule for v in check(trace(by_sender), ctx())] == ["OP-032"]


def test_calls_to_the_entry_point():
    deposit = bytes.fromhex("b760faf9") + b(SENDER).rjust(32, b"\x00")
    p = PhaseTrace("account", b(SENDER))
    p.calls.append(CallRecord(0xF1, b(SENDER), b(EP), 5, deposit, 36, True, False))
    p.calls.append(CallRecord(0xF1, b(SENDER), b(EP), 5, b"", 0, True, False))
    assert check(trace(p), ctx()) == []
    p.calls.append(CallRecord(0xFA, b(SENDER), b(EP), 0, bytes.fromhex("70a08231"), 36, True, False))
    [v] = check(trace(p), ctx())
    assert v.rule == "OP-054" and "selector 0x70a08231" in v.message


def test_code_hash_change():
    a, c = TOKEN, PAYMASTER
    assert code_hash_change({a: "0x01"}, {a: "0x01", c: "0x02"}) is None
    assert code_hash_change({a: "0x01"}, {}) is None
    err = code_hash_change({a: "0x01"}, {a: "0x02"})
    assert err.code == -32502 and err.data["rule"] == "COD-010"


def test_paymaster_context_and_failure_codes():
    """EREP-050 on the context; failure_code() maps a rule broken in a phase to the AA prefix
    blame() reads"""
    from bundler.pool.reputation import failure_code

    t = trace()
    [v] = check(t, ctx(paymaster_context=b"ctx"))
    assert v.rule == "EREP-050" and v.needs_stake == "paymaster"
    assert check(t, ctx(paymaster_context=b"ctx", paymaster_stake=STAKED)) == []
    assert check(t, ctx(paymaster=None, paymaster_context=b"ctx")) == []
    assert failure_code("AA23 reverted: x") == "AA23"
    assert failure_code("account uses banned opcode: TIMESTAMP", {"rule": "OP-011", "entity": "account"}) == "AA2"
    assert failure_code("factory ...", {"rule": "STO-031", "entity": "factory"}) == "AA1"
    assert failure_code("the code of 0x.. changed", {"rule": "COD-010"}) is None


def test_opcode_numbers_without_py_evm_are_py_evm_s():
    """sim/erc7562/trace.py spells the opcode numbers out so the main process needs no py-evm."""
    from eth.vm import opcode_values

    from bundler.sim.erc7562 import trace
    names = [n for n in dir(trace) if n.isupper() and isinstance(getattr(trace, n), int) and hasattr(opcode_values, n)]
    assert len(names) >= 30
    assert {n: getattr(trace, n) for n in names} == {n: getattr(opcode_values, n) for n in names}


def test_the_main_process_imports_no_py_evm():
    """bundler.app and everything the main process unpickles from the workers (results, traces,
    read sets) load without py-evm (about 6 MB of the main process's idle RSS)."""
    import subprocess
    import sys

    code = ("import sys, bundler.app, bundler.cli, bundler.sim.results, bundler.sim.types, "
            "bundler.sim.erc7562.trace; print(sorted(m for m in sys.modules if m == 'eth' or m.startswith('eth.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"
