"""Op records and the checks every Store passes, shared by the store tests of each room."""
from __future__ import annotations

from bundler.store import InflightTx, OpRecord, OpStatus, ReputationRow, Store, TxAttempt
from bundler.userop import UserOperation


def make_op(i: int, **changes) -> UserOperation:
    values = dict(sender="0x" + f"{i:040x}", nonce=(7 << 64) + i, call_data=b"\x01\x02" * i, call_gas_limit=100_000,
                  verification_gas_limit=200_000, pre_verification_gas=50_000, max_fee_per_gas=2 * 10**9,
                  max_priority_fee_per_gas=10**9, signature=b"\x05" * 65)
    values.update(changes)
    return UserOperation(**values)


def record(i: int, **changes) -> OpRecord:
    op = changes.pop("op", None) or make_op(i)
    return OpRecord(hash="0x" + f"{i:064x}", entry_point="0x0000000071727de22e5e9d8baf0edac6f37da032", op=op,
                    valid_after=5, valid_until=2**47, prefund=3 * 10**30, **changes)



async def check_store_interface(store: Store) -> None:
    """What every Store does alike (MemoryStore, SqliteStore, PostgresStore)."""
    assert isinstance(store, Store)
    r = record(1)
    store.put(r)
    await store.flush()
    got = store.get(r.hash)
    assert got.op == r.op and got.status == OpStatus.PENDING and got.prefund == 3 * 10**30
    store.update(r.hash, status=OpStatus.MINED, tx_hash="0xaa", block_number=12, block_hash="0xbb")
    store.put(record(2))
    store.update(record(2).hash, status=OpStatus.DROPPED, reason="AA21 didn't pay prefund", error_code=-32500)
    assert store.update("0x" + "ee" * 32, status=OpStatus.MINED) is None
    await store.flush()
    assert {x.hash for x in store.with_status(OpStatus.MINED)} == {r.hash}
    assert [x.hash for x in store.mined_since(12)] == [r.hash]
    assert store.mined_since(13) == []
    assert store.get(record(2).hash).error_code == -32500

    store.put_reputation(ReputationRow("0xABC", ops_seen=3, ops_included=1))
    assert store.get_reputation("0xabc").ops_seen == 3
    t = InflightTx("0xexec", 4, r.entry_point, [r.hash], [TxAttempt("0x01", "0x02", 10, 1)])
    store.put_inflight(t)
    assert store.inflight()[0].attempts[0].max_fee == 10
    store.delete_inflight("0xexec", 4)
    assert store.inflight() == []
    store.clear()
    assert store.get(r.hash) is None
    await store.flush()
    assert store.get(r.hash) is None
