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
