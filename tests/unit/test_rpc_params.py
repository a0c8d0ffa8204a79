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


# --- the UserOperation param (userop/codec.py UserOperationParam, decoded once at the edge) ---

from bundler.userop.codec import (  # noqa: E402
    decode_user_operation, decode_user_operation_json, parse_address, parse_bytes, parse_quantity,
)
from bundler.userop.model import EIP7702_FACTORY, Authorization, UserOperation  # noqa: E402

SENDER, PAYMASTER, FACTORY, DELEGATE = ("0x" + c * 20 for c in ("11", "22", "33", "44"))
OP = {
    "sender": SENDER.upper().replace("0X", "0x"), "nonce": "0x2a", "callData": "0xb61d27f6",
    "callGasLimit": "0x5208", "verificationGasLimit": "0x10000", "preVerificationGas": "0xc350",
    "maxFeePerGas": "0x3b9aca00", "maxPriorityFeePerGas": "0x1", "signature": "0x" + "00" * 65,
}
AUTH = {"chainId": "0x1", "address": DELEGATE, "nonce": "0x7", "yParity": "0x1", "r": "0x5", "s": "0x6"}


def refused(obj, *, for_estimation=False) -> str:
    with pytest.raises(InvalidParams) as e:
        decode_user_operation(obj, for_estimation=for_estimation)
    assert e.value.code == -32602
    return e.value.message


def test_a_v07_op_becomes_the_domain_user_operation():
    assert decode_user_operation(OP) == UserOperation(
        sender=SENDER, nonce=42, call_data=bytes.fromhex("b61d27f6"), call_gas_limit=21000,
        verification_gas_limit=0x10000, pre_verification_gas=50_000, max_fee_per_gas=10**9,
        max_priority_fee_per_gas=1, signature=b"\x00" * 65)


def test_factory_paymaster_and_v09_paymaster_signature_fields():
    op = decode_user_operation({**OP, "factory": FACTORY, "factoryData": "0x1234", "paymaster": PAYMASTER,
                                "paymasterVerificationGasLimit": "0x100", "paymasterPostOpGasLimit": "0x0",
                                "paymasterData": "0xabcd", "paymasterSignature": "0x99"})
    assert (op.factory, op.factory_data, op.paymaster) == (FACTORY, b"\x12\x34", PAYMASTER)
    assert (op.paymaster_verification_gas_limit, op.paymaster_post_op_gas_limit) == (0x100, 0)
    assert (op.paymaster_data, op.paymaster_signature) == (b"\xab\xcd", b"\x99")
    # "0x" stands for an absent factory / paymaster, and their fields may then be empty or zero
    none = decode_user_operation({**OP, "factory": "0x", "factoryData": "0x", "paymaster": "0x",
                                  "paymasterData": "0x", "paymasterVerificationGasLimit": "0x0"})
    assert (none.factory, none.paymaster) == (None, None)


def test_an_eip7702_op_with_its_authorization():
    op = decode_user_operation({**OP, "factory": "0x7702", "eip7702Auth": AUTH})
    assert op.factory == EIP7702_FACTORY and op.is_eip7702
    assert op.eip7702_auth == Authorization(chain_id=1, address=DELEGATE, nonce=7, y_parity=1, r=5, s=6)
    legacy_v = {k: v for k, v in AUTH.items() if k != "yParity"} | {"v": "0x0"}
    assert decode_user_operation({**OP, "eip7702Auth": legacy_v}).eip7702_auth.y_parity == 0


def test_json_numbers_are_quantities_and_unknown_fields_are_ignored():
    op = decode_user_operation({**OP, "nonce": 7, "preVerificationGas": 2**200, "extra": [1, 2]})
    assert (op.nonce, op.pre_verification_gas) == (7, 2**200)


def test_estimation_needs_only_sender_nonce_and_call_data():
    op = decode_user_operation({k: OP[k] for k in ("sender", "nonce", "callData")}, for_estimation=True)
    assert (op.call_gas_limit, op.signature) == (0, b"")
    assert refused({"sender": SENDER, "nonce": "0x0"}, for_estimation=True) == \
        "invalid UserOperation: missing field callData"


def test_the_json_text_of_the_store_decodes_to_the_same_op():
    from bundler.userop.codec import format_user_operation
    op = decode_user_operation({**OP, "paymaster": PAYMASTER, "paymasterData": "0x01", "eip7702Auth": AUTH,
                                "factory": "0x7702"})
    import orjson
    assert decode_user_operation_json(orjson.dumps(format_user_operation(op))) == op
    with pytest.raises(InvalidParams, match="invalid nonce"):
        decode_user_operation_json(b'{"sender": "0x' + b"11" * 20 + b'", "nonce": "12"}')


@pytest.mark.parametrize("field,value,message", [
    ("sender", "0x1234", "invalid sender: '0x1234' is not a 20-byte 0x-prefixed address"),
    ("sender", 5, "invalid sender: 'int' is not a 20-byte 0x-prefixed address"),
    ("nonce", "12", "invalid nonce: '12' is not a 0x-prefixed hex quantity"),
    ("nonce", "0x", "invalid nonce: '0x' is not a 0x-prefixed hex quantity"),
    ("nonce", "0xg1", "invalid nonce: '0xg1' is not a 0x-prefixed hex quantity"),
    ("nonce", 1.5, "invalid nonce: expected a hex quantity string, got float"),
    ("nonce", [1], "invalid nonce: expected a hex quantity string, got list"),
    ("nonce", "0x1" + "0" * 64, "invalid nonce: value does not fit in 256 bits"),
    ("nonce", -1, "invalid nonce: value out of range (negative)"),
    ("maxFeePerGas", True, "invalid maxFeePerGas: expected a hex quantity string, got bool"),
    ("callGasLimit", "0x1" + "0" * 32, "invalid callGasLimit: value out of range (max 0x" + "f" * 32 + ")"),
    ("callData", "0xabc", "invalid callData: hex data has an odd number of digits"),
    ("callData", "abcd", "invalid callData: 'abcd' is not 0x-prefixed hex data"),
    ("callData", {}, "invalid callData: 'dict' is not 0x-prefixed hex data"),
    ("callData", "0x" + "00" * (64 * 1024 + 1), "invalid callData: longer than 65536 bytes"),
    ("signature", None, "invalid UserOperation: missing field signature"),
    ("factory", "0xnothex" + "0" * 34, "invalid factory: '0xnothex0000000000000000000000000000000000' is not a 20-byte "
                                       "0x-prefixed address"),
    ("factoryData", "0x12", "invalid factoryData: set without a factory"),
    ("paymaster", "0x7702", "invalid paymaster: '0x7702' is not a 20-byte 0x-prefixed address"),
    ("paymasterData", "0x12", "invalid paymasterData: set without a paymaster"),
    ("paymasterPostOpGasLimit", "0x5", "invalid paymasterPostOpGasLimit: set without a paymaster"),
    ("paymasterSignature", "0x12", "invalid paymasterSignature: set without a paymaster"),
    ("initCode", "0x", "invalid UserOperation: field initCode is EntryPoint v0.6; use factory/factoryData for v0.7/v0.8"),
    ("paymasterAndData", "0x", "invalid UserOperation: field paymasterAndData is EntryPoint v0.6; "
                               "use paymaster/paymasterData/... for v0.7/v0.8"),
    ("eip7702Auth", "0x1", "invalid eip7702Auth: expected an object"),
    ("eip7702Auth", {k: v for k, v in AUTH.items() if k != "r"}, "invalid eip7702Auth: missing field r"),
    ("eip7702Auth", {k: v for k, v in AUTH.items() if k != "yParity"}, "invalid eip7702Auth: missing field yParity"),
    ("eip7702Auth", {**AUTH, "chainId": "1"}, "invalid eip7702Auth.chainId: '1' is not a 0x-prefixed hex quantity"),
    ("eip7702Auth", {**AUTH, "address": "0x12"}, "invalid eip7702Auth.address: '0x12' is not a 20-byte 0x-prefixed address"),
    ("eip7702Auth", {**AUTH, "nonce": hex(1 << 64)}, "invalid eip7702Auth.nonce: value out of range (max 0xffffffffffffffff)"),
    ("eip7702Auth", {**AUTH, "yParity": "0x100"}, "invalid eip7702Auth.yParity: value out of range (max 0xff)"),
    ("eip7702Auth", {**AUTH, "s": None}, "invalid eip7702Auth.s: expected a hex quantity string, got NoneType"),
])
def test_each_bad_field_shape_is_refused_naming_the_field(field, value, message):
    obj = dict(OP)
    if value is None and field in obj:
        obj.pop(field)
    else:
        obj[field] = value
    assert refused(obj) == message


@pytest.mark.parametrize("obj", ["not an object", 5, [OP], None])
def test_an_op_that_is_no_object_is_refused(obj):
    assert refused(obj) == "invalid UserOperation: expected a JSON object"


def test_the_scalar_params_follow_the_same_declared_rules():
    assert parse_address(SENDER.upper().replace("0X", "0x"), "account") == SENDER
    assert "invalid account: '0x12' is not a 20-byte" in _message(parse_address, "0x12", "account")
    assert parse_quantity("0x10", "chainId") == 16 and parse_quantity(3, "chainId") == 3
    assert _message(parse_quantity, "0x100", "x", 255) == "invalid x: value out of range (max 0xff)"
    assert _message(parse_quantity, "ten", "x") == "invalid x: 'ten' is not a 0x-prefixed hex quantity"
    assert parse_bytes("0x00ff", "data", 2) == b"\x00\xff"
    assert _message(parse_bytes, "0x000000", "data", 2) == "invalid data: longer than 2 bytes"
    assert _message(parse_bytes, "0x0", "data") == "invalid data: hex data has an odd number of digits"


def _message(f, *args) -> str:
    with pytest.raises(InvalidParams) as e:
        f(*args)
    return e.value.message


# --- the other params: entryPoint, userOpHash, the debug_bundler_* and session_* params ---

from bundler.entrypoint import V07, V08, V09  # noqa: E402
from bundler.rpc.params import (  # noqa: E402
    decode_account_and_session_key, decode_bundling_mode, decode_entry_point, decode_op_hash,
    decode_reputation_entries,
)


def test_an_entry_point_must_be_one_this_bundler_serves():
    assert decode_entry_point(V08.address.upper().replace("0X", "0x"), [V07, V08]) is V08
    for bad in (V09.address, "0x" + "00" * 20, 5, None):
        message = _message(decode_entry_point, bad, [V07, V08])
        assert message.startswith(f"unsupported entryPoint {bad!r}; this bundler serves ")
        assert "0x0000000071727De22E5E9d8BAf0edAc6f37da032" in message


def test_an_op_hash_is_32_bytes_of_hex():
    assert decode_op_hash("0x" + "AB" * 32) == "0x" + "ab" * 32
    for bad in ("0x1234", 12, None, "0x" + "zz" * 32, "ab" * 33):
        assert _message(decode_op_hash, bad) == "Missing/invalid userOpHash"


def test_bundling_mode():
    assert decode_bundling_mode("manual") == "manual" and decode_bundling_mode("auto") == "auto"
    assert _message(decode_bundling_mode, "sometimes") == "bundling mode must be 'auto' or 'manual'"


def test_reputation_entries():
    assert decode_reputation_entries([{"address": SENDER.upper().replace("0X", "0x"), "opsSeen": "0x3", "opsIncluded": 2},
                                      {"address": PAYMASTER}]) == [(SENDER, 3, 2), (PAYMASTER, 0, 0)]
    assert _message(decode_reputation_entries, "nope") == \
        "invalid reputation entries: expected an array of {address, opsSeen, opsIncluded}"
    assert _message(decode_reputation_entries, [5]) == "invalid reputation entry 0: expected an object"
    assert _message(decode_reputation_entries, [{"address": SENDER}, {"address": "0x12"}]) == \
        "invalid reputation entry 1 address: '0x12' is not a 20-byte 0x-prefixed address"
    assert _message(decode_reputation_entries, [{"opsSeen": "0x1"}]) == \
        "invalid reputation entry 0 address: 'NoneType' is not a 20-byte 0x-prefixed address"
    assert _message(decode_reputation_entries, [{"address": SENDER, "opsSeen": "x"}]) == \
        "invalid reputation entry 0 opsSeen: 'x' is not a 0x-prefixed hex quantity"
    assert _message(decode_reputation_entries, [{"address": SENDER, "opsIncluded": 1.5}]) == \
        "invalid reputation entry 0 opsIncluded: expected a hex quantity string, got float"


def test_session_params():
    assert decode_account_and_session_key(SENDER, PAYMASTER.upper().replace("0X", "0x")) == (SENDER, PAYMASTER)
    assert _message(decode_account_and_session_key, "0x12", PAYMASTER).startswith("invalid account: '0x12'")
    assert _message(decode_account_and_session_key, SENDER, None) == \
        "invalid sessionKey: 'NoneType' is not a 20-byte 0x-prefixed address"
