"""preVerificationGas pricing counts the op's handleOps calldata without building it: the size and
token count must equal those of eth_abi's encoding for any op shape."""
from __future__ import annotations

import random

import pytest

from bundler.gas.pvg import calldata_size_and_tokens, op_calldata, tokens
from bundler.userop import UserOperation


def random_op(rng: random.Random) -> UserOperation:
    def blob(max_len: int) -> bytes:
        n = rng.choice([0, 1, 31, 32, 33, rng.randrange(max_len + 1)])
        return bytes(rng.choice([0, 0, rng.randrange(256)]) for _ in range(n))

    def word(bits: int) -> int:
        return rng.choice([0, 1, (1 << bits) - 1, rng.getrandbits(bits), rng.getrandbits(8) << (bits - 8)])

    sender = "0x" + bytes(rng.choice([0, rng.randrange(256)]) for _ in range(20)).hex()
    factory = rng.choice([None, "0x" + rng.randbytes(20).hex(), "0x" + "00" * 19 + "01"])
    paymaster = rng.choice([None, "0x" + rng.randbytes(20).hex()])
    return UserOperation(
        sender=sender, nonce=word(256), call_data=blob(300),
        call_gas_limit=word(128), verification_gas_limit=word(128), pre_verification_gas=word(256),
        max_fee_per_gas=word(128), max_priority_fee_per_gas=word(128), signature=blob(130),
        factory=factory, factory_data=blob(200) if factory else b"",
        paymaster=paymaster, paymaster_verification_gas_limit=word(128) if paymaster else 0,
        paymaster_post_op_gas_limit=word(128) if paymaster else 0, paymaster_data=blob(100) if paymaster else b"",
    )


@pytest.mark.parametrize("seed", range(400))
def test_counted_calldata_equals_eth_abi_encoding(seed):
    op = random_op(random.Random(seed))
    data = op_calldata(op)
    assert calldata_size_and_tokens(op) == (len(data), tokens(data))
