"""The declared params of the RPC edge (rpc/params.py): the wire form is decoded once, into
typed values, and every kind of bad input is an InvalidParams (-32602) naming the field."""
import pytest

from bundler.chain.types import AccountOverride
from bundler.errors import InvalidParams
from bundler.gas.estimate import merge_state_overrides
from bundler.rpc.params import decode_state_override

A = "0x" + "ab" * 20


def bad(obj) -> str:
    with pytest.raises(InvalidParams) as e:
        decode_state_override(obj)
    assert e.value.code == -32602
    return e.value.message


def test_the_wire_form_becomes_typed_overrides_keyed_by_lower_case_address():
    out = decode_state_override({A.upper().replace("0X", "0x"): {
        "balance": "0x10", "nonce": "0x3", "code": "0x6000", "stateDiff": {"0x1": "0x09"}}})
    assert out == {A: AccountOverride(balance=16, nonce=3, code=b"\x60\x00", state_diff={1: 9})}
    assert decode_state_override(None) == {}
    assert decode_state_override({A: {"state": {"0x0": "0x0"}}})[A].state == {0: 0}


def test_unknown_fields_are_refused_by_name():
    assert "unknown field `bogus`" in bad({A: {"bogus": "0x1"}})
    assert "unknown field `storage`" in bad({A: {"storage": {}}})


def test_decode_errors_name_the_field():
    assert bad({A: {"balance": [1]}}).endswith(f"at `stateOverride[{A}].balance`")
    assert f"stateOverride[{A}].balance" in bad({A: {"balance": "12"}})  # not 0x-prefixed
    assert f"stateOverride[{A}].nonce" in bad({A: {"nonce": hex(1 << 64)}})  # nonces are 64-bit
    assert f"stateOverride[{A}].code" in bad({A: {"code": "0x600"}})  # odd number of digits
    assert f"stateOverride[{A}].stateDiff value" in bad({A: {"stateDiff": {"0x1": "zz"}}})
    assert f"stateOverride[{A}].state slot" in bad({A: {"state": {"1": "0x1"}}})
    assert "stateOverride address" in bad({"0x1234": {}})
    assert "both state and stateDiff" in bad({A: {"state": {}, "stateDiff": {}}})
    assert "expected an object keyed by address" in bad([A])
    assert "Expected `object`, got `str`" in bad({A: "0x1"})


def test_hex_rules_are_the_user_operation_codecs():
    # the same limits as a UserOperation's quantities (one set of rules at the edge)
    assert "does not fit in 256 bits" in bad({A: {"balance": "0x1" + "0" * 64}})
    assert decode_state_override({A: {"balance": 5}})[A].balance == 5  # JSON numbers, as the codec
    assert "0x-prefixed hex" in bad({A: {"balance": "0x"}})


def test_the_bundlers_nonce_override_merges_under_the_callers():
    ours = {A: AccountOverride(state_diff={1: 1, 2: 2})}
    theirs = decode_state_override({A: {"stateDiff": {"0x2": "0x7"}, "balance": "0x1"}})
    assert merge_state_overrides(ours, theirs) == {A: AccountOverride(balance=1, state_diff={1: 1, 2: 7})}
    full = decode_state_override({A: {"state": {"0x2": "0x7"}}})
    assert merge_state_overrides(ours, full) == full  # a full storage replacement is kept as given
    other = {"0x" + "cd" * 20: AccountOverride(balance=1)}
    assert merge_state_overrides(ours, other) == {**other, **ours}
