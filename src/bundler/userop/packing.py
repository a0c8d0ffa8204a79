"""Packed form and userOpHash per EntryPoint version: one implementation, in the session SDK
(sdk/python, session_sdk.packing)."""
from session_sdk.packing import (
    EIP712_DOMAIN_TYPEHASH, PACKED_USEROP_TYPE, PACKED_USEROP_TYPEHASH, account_gas_limits, domain_separator_v08,
    encode_packed_op, gas_fees, init_code, pack, paymaster_and_data, unpack, user_op_hash_v07, user_op_hash_v08,
)

__all__ = ["EIP712_DOMAIN_TYPEHASH", "PACKED_USEROP_TYPE", "PACKED_USEROP_TYPEHASH", "account_gas_limits",
           "domain_separator_v08", "encode_packed_op", "gas_fees", "init_code", "pack", "paymaster_and_data",
           "unpack", "user_op_hash_v07", "user_op_hash_v08"]
