"""The EntryPoint version table drives the differences: a new version is one data row."""
import dataclasses

import pytest

from bundler.config import Config
from bundler.entrypoint import ALL, V07, V08, V09, VERSIONS, hash_v07
from bundler.errors import InvalidParams
from bundler.pool.admission import static_checks
from bundler.sim.entrypoint_sim import simulation_words
from bundler.userop.packing import user_op_hash_v07, user_op_hash_v08, user_op_hash_v09
from helpers.stores import make_op

SEVEN_SEVEN_OH_TWO = "0x7702" + "00" * 18
FAKE = dataclasses.replace(V08, version="9.9", address="0x" + "ab" * 20, hash_scheme=hash_v07,
                           simulation_slots=(7, 8), supports_eip7702=False)


def test_each_row_hashes_with_its_own_scheme():
    op = make_op(3)
    assert V07.user_op_hash(op, 1) == user_op_hash_v07(op, V07.address, 1)
    assert V08.user_op_hash(op, 1) == user_op_hash_v08(op, V08.address, 1, None)
    assert V09.user_op_hash(op, 1) == user_op_hash_v09(op, V09.address, 1, None)
    assert len({ep.user_op_hash(op, 1) for ep in ALL}) == 3


def test_a_new_row_works_through_hash_slots_and_7702_checks():
    op = make_op(3, pre_verification_gas=10**6)
    assert FAKE.user_op_hash(op, 5) == user_op_hash_v07(op, FAKE.address, 5) != V07.user_op_hash(op, 5)
    assert simulation_words(FAKE) == [(bytes.fromhex("ab" * 20), 7), (bytes.fromhex("ab" * 20), 8)]
    assert simulation_words(V07) == [(bytes.fromhex(V07.address[2:]), s) for s in (3, 4, 5, 6)]
    delegated = dataclasses.replace(op, factory=SEVEN_SEVEN_OH_TWO)
    static_checks(delegated, V08, Config(), 1)  # v0.8's row allows EIP-7702
    with pytest.raises(InvalidParams, match="EIP-7702 UserOperations need"):
        static_checks(delegated, FAKE, Config(), 1)


def test_paymaster_signature_only_where_the_row_has_it():
    op = make_op(3, paymaster="0x" + "cd" * 20, paymaster_verification_gas_limit=1, paymaster_post_op_gas_limit=1,
                 paymaster_signature=b"\x01" * 65)
    with pytest.raises(InvalidParams, match="has no paymaster signature"):
        FAKE.user_op_hash(op, 1)
    with_sig = dataclasses.replace(FAKE, paymaster_signature=True)
    assert with_sig.user_op_hash(op, 1) == user_op_hash_v07(op, FAKE.address, 1)


def test_config_serves_the_versions_of_the_table():
    assert VERSIONS == tuple(ep.version for ep in ALL) == ("0.7", "0.8", "0.9")
    assert Config().entry_points == list(VERSIONS)
