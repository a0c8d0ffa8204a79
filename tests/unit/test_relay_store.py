"""The relay's tables (SQLite file, PostgreSQL) and its key storage: keys encrypted at rest,
useless without the master key, bound to their session address, rotated to a new master key
with `bundler relay-rotate-key`."""
from __future__ import annotations

import sqlite3
import time

import pytest
from cryptography.fernet import Fernet

from bundler import cli
from bundler.relay import WEBHOOK_KEY_META, rotate_master_key
from bundler.relay.keystore import KeyDecryptError, KeyStore, MasterKeyError, load_master_keys, parse_master_keys
from bundler.sessions.recover import recover_signer
from bundler.store.relay import Credential, DuplicateKey, Grant, RelayCall, RelayStore


def _grant(keys: KeyStore, gid: str = "grant_1", cred: str = "cred_1", account: str = "0x" + "aa" * 20) -> Grant:
    address, encrypted = keys.new_key()
    return Grant(id=gid, credential_id=cred, account=account, entry_point="0x" + "00" * 20,
                 session_address=address, encrypted_key=encrypted, spec="00", permissions="{}", mode="enable",
                 status="prepared", grant_nonce=0)


def store_checks(store: RelayStore) -> None:
    keys = KeyStore([Fernet.generate_key()])
    store.add_credential(Credential(id="cred_1", address="0x" + "11" * 20, name="a"))
    store.add_credential(Credential(id="cred_2", address="0x" + "22" * 20, name="b", webhook_url="http://x/"))
    assert store.get_credential("cred_2").webhook_url == "http://x/"
    assert store.get_credential("nope") is None
    g1, g2 = _grant(keys), _grant(keys, "grant_2", "cred_2", "0x" + "bb" * 20)
    store.add_grant(g1)
    store.add_grant(g2)
    store.update_grant("grant_1", status="active")
    assert [g.id for g in store.grants(credential_id="cred_1")] == ["grant_1"]
    assert [g.id for g in store.grants(account="0x" + "bb" * 20)] == ["grant_2"]
    assert [g.id for g in store.grants(statuses=("active",))] == ["grant_1"]
    call = RelayCall(id="call_1", credential_id="cred_1", idempotency_key="k", grant_id="grant_1",
                     account=g1.account, calls="[]")
    store.add_call(call)
    with pytest.raises(DuplicateKey):  # an idempotency key is used once per credential
        store.add_call(RelayCall(id="call_2", credential_id="cred_1", idempotency_key="k", grant_id="grant_1",
                                 account=g1.account, calls="[]"))
    store.add_call(RelayCall(id="call_3", credential_id="cred_2", idempotency_key="k", grant_id="grant_2",
                             account=g2.account, calls="[]"))
    assert store.call_by_idempotency_key("cred_1", "k").id == "call_1"
    store.update_call("call_1", status="pending", user_op_hash="0x01")
    assert [c.id for c in store.calls(statuses=("pending",))] == ["call_1"]
    assert [c.id for c in store.calls(statuses=("queued",), grant_id="grant_2")] == ["call_3"]
    # a claim succeeds once (two instances never dispatch one call)
    assert store.transition_call("call_3", ("queued",), status="dispatching")
    assert not store.transition_call("call_3", ("queued",), status="dispatching")
    store.requeue_stale_dispatching(claimed_before=0)  # claimed just now: kept
    assert store.get_call("call_3").status == "dispatching"
    store.requeue_stale_dispatching(claimed_before=time.time() + 1)
    assert store.get_call("call_3").status == "queued"
    assert store.use_request_nonce("cred:cred_1", "n" * 16, 10.0)
    assert not store.use_request_nonce("cred:cred_1", "n" * 16, 10.0)  # a replay
    assert store.use_request_nonce("cred:cred_2", "n" * 16, 10.0)
    store.prune_request_nonces(20.0)
    assert store.use_request_nonce("cred:cred_1", "n" * 16, 30.0)  # expired, forgotten
    store.audit("grant.prepared", credential_id="cred_1", account=g1.account, grant_id="grant_1", x=1)
    store.audit("grant.prepared", credential_id="cred_2", account=g2.account, grant_id="grant_2")
    (mine,) = store.audit_events(credential_id="cred_1")
    assert mine.event == "grant.prepared" and mine.detail == {"x": 1}
    assert [e.grant_id for e in store.audit_events(account=g2.account)] == ["grant_2"]
    assert store.add_meta("m", "first") == "first" and store.add_meta("m", "second") == "first"


def test_sqlite_relay_store(tmp_path):
    store = RelayStore.sqlite(str(tmp_path / "bundler.sqlite"))
    try:
        store_checks(store)
    finally:
        store.close()
    # committed at once: another connection sees the rows
    conn = sqlite3.connect(tmp_path / "bundler.sqlite")
    assert conn.execute("SELECT count(*) FROM relay_calls").fetchone()[0] == 2
    conn.close()


def test_memory_relay_store():
    store = RelayStore.sqlite(":memory:")
    store_checks(store)
    store.close()


def test_postgres_relay_store():
    from helpers.pg import PostgresUnavailable, start_postgres

    try:
        server = start_postgres()
    except PostgresUnavailable as e:
        pytest.skip(f"PostgreSQL tests skipped: {e}")
    try:
        dsn = server.database()
        store = RelayStore.postgres(dsn)
        try:
            store_checks(store)
        finally:
            store.close()
        again = RelayStore.postgres(dsn)  # a second instance shares the rows (schema creation is idempotent)
        try:
            assert again.get_credential("cred_2").name == "b"
        finally:
            again.close()
    finally:
        server.stop()


def test_keys_are_useless_without_the_master_key_and_bound_to_their_address():
    master = Fernet.generate_key()
    keys = KeyStore([master])
    address, encrypted = keys.new_key()
    key = keys.open(encrypted, address)
    assert repr(key) == f"SessionKey({address})"  # the secret never in a repr (logs, tracebacks)
    sig = key.sign(b"\x11" * 32)
    assert recover_signer(b"\x11" * 32, sig) == address
    with pytest.raises(KeyDecryptError):
        KeyStore([Fernet.generate_key()]).open(encrypted, address)
    other_address, other_encrypted = keys.new_key()
    with pytest.raises(KeyDecryptError):  # a ciphertext moved into another grant's row
        keys.open(other_encrypted, address)
    tampered = encrypted[:-4] + ("AAAA" if encrypted[-4:] != "AAAA" else "BBBB")
    with pytest.raises(KeyDecryptError):
        keys.open(tampered, address)
    with pytest.raises(MasterKeyError):
        parse_master_keys(["not a key"], "test")


def test_master_key_from_file_and_dev_default(tmp_path):
    class Conf:
        relay_master_key: list = []
        relay_master_key_file = ""

    with pytest.raises(MasterKeyError):
        load_master_keys(Conf())
    made = load_master_keys(Conf(), dev_data_dir=str(tmp_path))
    assert load_master_keys(Conf(), dev_data_dir=str(tmp_path)) == made  # kept across restarts
    assert (tmp_path / "relay-master.key").stat().st_mode & 0o077 == 0
    new, old = Fernet.generate_key(), Fernet.generate_key()
    path = tmp_path / "keys"
    path.write_text(f"# newest first\n{new.decode()}\n{old.decode()}\n")
    Conf.relay_master_key_file = str(path)
    assert load_master_keys(Conf()) == [new, old]


def test_rotation_command_reencrypts_every_key(tmp_path, monkeypatch, capsys):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    old, new = Fernet.generate_key(), Fernet.generate_key()
    old_keys = KeyStore([old])
    store = RelayStore.sqlite(str(data_dir / "bundler.sqlite"))
    grants = [_grant(old_keys, f"grant_{i}") for i in range(3)]
    for g in grants:
        store.add_grant(g)
    store.set_meta(WEBHOOK_KEY_META, old_keys.encrypt_secret(b"\x07" * 32))
    store.close()

    monkeypatch.setenv("BUNDLER_RELAY_MASTER_KEY", f"{new.decode()},{old.decode()}")
    assert cli.main(["relay-rotate-key", "--data-dir", str(data_dir)]) == 0
    assert "re-encrypted 4 key(s)" in capsys.readouterr().out

    store = RelayStore.sqlite(str(data_dir / "bundler.sqlite"))
    try:
        only_new = KeyStore([new])
        for g in grants:
            row = store.get_grant(g.id)
            assert only_new.open(row.encrypted_key, g.session_address).address == g.session_address
            with pytest.raises(KeyDecryptError):
                old_keys.open(row.encrypted_key, g.session_address)
        assert only_new.decrypt_secret(store.get_meta(WEBHOOK_KEY_META)) == b"\x07" * 32
    finally:
        store.close()
    # a master key list that cannot open the stored keys stops the rotation, saying why
    monkeypatch.setenv("BUNDLER_RELAY_MASTER_KEY", Fernet.generate_key().decode())
    with pytest.raises(SystemExit, match="rotation stopped"):
        cli.main(["relay-rotate-key", "--data-dir", str(data_dir)])


def test_rotation_uses_the_store_interface():
    store = RelayStore.sqlite(":memory:")
    old, new = Fernet.generate_key(), Fernet.generate_key()
    g = _grant(KeyStore([old]))
    store.add_grant(g)
    assert rotate_master_key(store, KeyStore([new, old])) == 1
    assert store.get_grant(g.id).encrypted_key != g.encrypted_key
    assert KeyStore([new]).open(store.get_grant(g.id).encrypted_key, g.session_address)
    store.close()
