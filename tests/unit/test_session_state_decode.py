"""sessions/state.py reads getSession/getUsage answers by hand (the fast path's first block):
on every answer eth_abi's strict decoder accepts, the hand reader must give the same values, and
on anything else it must step aside (eth_abi then decides, raising as before)."""
from __future__ import annotations

from eth_abi import decode, encode
from hypothesis import HealthCheck, given, settings, strategies as st

from bundler.sessions import state
from bundler.sessions.state import SESSION_INFO_T, USAGE_T

addresses = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())


def uint(bits: int):
    return st.integers(min_value=0, max_value=(1 << bits) - 1)


limits = st.tuples(uint(8), uint(256))
constraints = st.tuples(uint(8), uint(8), uint(8), uint(32), st.binary(min_size=32, max_size=32), limits)
call_policies = st.tuples(addresses, st.binary(min_size=4, max_size=4), uint(256), limits,
                          st.lists(constraints, max_size=3))
transfer_policies = st.tuples(addresses, uint(256), limits)
gas_policies = st.tuples(uint(256), limits, st.lists(addresses, max_size=3))
specs = st.tuples(addresses, uint(48), uint(48), uint(48), st.booleans(), uint(32),
                  st.lists(call_policies, max_size=3), st.lists(transfer_policies, max_size=3), gas_policies)
session_infos = st.tuples(specs, uint(8), uint(64), uint(32), uint(32))
counters = st.tuples(uint(48), uint(256))
usages = st.tuples(uint(32), st.lists(counters, max_size=3), st.lists(st.lists(counters, max_size=3), max_size=3),
                   st.lists(counters, max_size=3), counters)


def normal(value):
    """eth_abi's shape with addresses in lower case (the hand reader's; from_abi lowers both)."""
    if isinstance(value, (tuple, list)):
        return tuple(normal(v) for v in value)
    if isinstance(value, str):
        return value.lower()
    return value


def by_eth_abi(kind: str, data: bytes):
    try:
        return ("ok", normal(decode([kind], data)[0]))
    except Exception as e:
        return ("error", type(e).__name__)


def by_hand(kind: str, data: bytes):
    reader = state._session_info_tuple if kind == SESSION_INFO_T else state._usage_tuple
    try:
        return ("ok", normal(reader(data)))
    except state._NotStrict:
        return ("not strict", None)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(session_infos.map(lambda v: (SESSION_INFO_T, v)), usages.map(lambda v: (USAGE_T, v))))
def test_hand_reader_equals_eth_abi_on_valid_answers(kind_value):
    kind, value = kind_value
    data = encode([kind], [value])
    assert by_hand(kind, data) == by_eth_abi(kind, data) == ("ok", normal(value))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(session_infos.map(lambda v: (SESSION_INFO_T, v)), usages.map(lambda v: (USAGE_T, v))),
       st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)), min_size=1, max_size=3),
       st.integers(min_value=0, max_value=64))
def test_hand_reader_never_accepts_what_eth_abi_refuses(kind_value, flips, cut):
    """Corrupted answers (bytes overwritten, the tail cut): the hand reader either agrees with
    eth_abi or steps aside; it never accepts an answer eth_abi refuses, nor reads it otherwise."""
    kind, value = kind_value
    data = bytearray(encode([kind], [value]))
    for at, byte in flips:
        data[at % len(data)] = byte
    data = bytes(data[:len(data) - cut * 8 if cut * 8 < len(data) else len(data)])
    hand = by_hand(kind, data)
    if hand[0] == "ok":
        assert hand == by_eth_abi(kind, data)


def test_decoders_fall_back_to_eth_abi_and_raise_as_before():
    # truncated: the hand reader steps aside, eth_abi raises (state_error in the view, full simulation)
    data = encode([SESSION_INFO_T], [(("0x" + "11" * 20, 1, 2, 3, True, 4, [], [], (5, (1, 6), [])), 1, 2, 3, 0)])
    for bad in (data[:-32], data[:100], b""):
        assert by_hand(SESSION_INFO_T, bad)[0] == "not strict"
        assert by_eth_abi(SESSION_INFO_T, bad)[0] == "error"
        try:
            state.decode_session_info(bad)
        except Exception as e:
            assert type(e).__module__.startswith("eth_abi")
        else:
            raise AssertionError("a truncated answer decoded")
    s = state.decode_session_info(data)
    assert (s.status, s.grant_nonce, s.usage_count, s.epoch, s.spec.signer, s.spec.gas.cost_limit.amount) == \
        (1, 2, 3, 0, "0x" + "11" * 20, 6)


def test_every_word_corrupted_in_turn():
    """Each word of a full answer with its first byte set (dirty padding, huge offsets or
    lengths) and its last byte set to 2 (a bool that is not 0/1, a moved offset): the hand reader
    agrees with eth_abi or steps aside."""
    limit = (1, 10**20)
    spec = ("0x" + "11" * 20, 1, 2, 3, True, 4,
            [("0x" + "22" * 20, b"\xa9\x05\x9c\xbb", 5, limit, [(6, 1, 20, 1, b"\x07" * 32, limit)])],
            [("0x" + "33" * 20, 8, limit)], (9, limit, ["0x" + "44" * 20]))
    usage = (3, [(1, 2)], [[(3, 4)], []], [(5, 6)], (7, 8))
    refused = 0
    for kind, value in ((SESSION_INFO_T, (spec, 1, 2, 3, 0)), (USAGE_T, usage)):
        data = encode([kind], [value])
        for at in range(0, len(data), 32):
            for pos, byte in ((at, 1), (at + 31, 2), (at + 31, 0)):
                bad = bytearray(data)
                bad[pos] = byte
                hand, reference = by_hand(kind, bytes(bad)), by_eth_abi(kind, bytes(bad))
                if hand[0] == "ok":
                    assert hand == reference, (kind, pos)
                refused += reference[0] == "error"
    assert refused > 20  # the sweep does reach answers eth_abi refuses
