"""The wire form of results is written at the RPC edge (rpc/results.py) from typed values."""
from bundler.gas.estimate import GasLimits
from bundler.rpc.results import encode_gas_limits


def test_gas_limits_are_hex_quantities_with_paymaster_limits_only_when_sponsored():
    plain = GasLimits(pre_verification_gas=50_000, verification_gas_limit=0x1234, call_gas_limit=0)
    assert encode_gas_limits(plain) == {
        "preVerificationGas": "0xc350", "verificationGasLimit": "0x1234", "callGasLimit": "0x0"}
    sponsored = GasLimits(1, 2, 3, paymaster_verification_gas_limit=4, paymaster_post_op_gas_limit=0)
    assert encode_gas_limits(sponsored) == {
        "preVerificationGas": "0x1", "verificationGasLimit": "0x2", "callGasLimit": "0x3",
        "paymasterVerificationGasLimit": "0x4", "paymasterPostOpGasLimit": "0x0"}


def test_a_found_op_is_written_with_a_checksummed_entry_point_and_null_tx_fields_while_pending():
    from bundler.chain.lookup import FoundOp
    from bundler.rpc.results import encode_found_op
    from bundler.userop.codec import format_user_operation
    from bundler.userop.model import UserOperation

    op = UserOperation(sender="0x" + "11" * 20, nonce=1, call_data=b"\x01", call_gas_limit=2,
                       verification_gas_limit=3, pre_verification_gas=4, max_fee_per_gas=5,
                       max_priority_fee_per_gas=6, signature=b"")
    ep = "0x0000000071727de22e5e9d8baf0edac6f37da032"
    assert encode_found_op(None) is None
    assert encode_found_op(FoundOp(op, ep)) == {
        "userOperation": format_user_operation(op), "entryPoint": "0x0000000071727De22E5E9d8BAf0edAc6f37da032",
        "transactionHash": None, "blockHash": None, "blockNumber": None}
    mined = encode_found_op(FoundOp(op, ep, "0x" + "aa" * 32, "0x" + "bb" * 32, "0x10"))
    assert (mined["transactionHash"], mined["blockHash"], mined["blockNumber"]) == ("0x" + "aa" * 32, "0x" + "bb" * 32, "0x10")
