"""Nothing acknowledged is lost: `bundler run` as a child process is killed with SIGKILL at
different moments and restarted on the same data dir; every op eth_sendUserOperation
acknowledged is then mined, pending, or reported dropped with its reason, and an in-flight
bundle is followed (same nonce, same transaction), never sent again as a new one."""
from __future__ import annotations

import concurrent.futures
import os
import sqlite3

import orjson
import pytest
from eth_account import Account

from bundler.devchain.anvil import ANVIL_ACCOUNT0, rpc
from bundler.entrypoint import V07, V08
from bundler.userop import format_user_operation
from helpers.accounts import DevChain, mine
from helpers.procs import BundlerProcess, RpcFailure, wait_for


@pytest.fixture(scope="module")
def chain():
    c = DevChain.start()
    try:
        yield c
    finally:
        c.stop()


def new_executor(chain) -> str:
    key = "0x" + os.urandom(32).hex()
    rpc(chain.url, "anvil_setBalance", [Account.from_key(key).address, hex(100 * 10**18)])
    mine(chain.url)
    return key


def executor_nonce(chain, key: str, tag: str = "latest") -> int:
    return int(rpc(chain.url, "eth_getTransactionCount", [Account.from_key(key).address, tag]), 16)


def send(b: BundlerProcess, chain, acct, nonce=None) -> str:
    op = acct.sign(acct.op(acct.execute("0x" + os.urandom(20).hex(), 1), nonce=nonce), chain.chain_id)
    return b.call("eth_sendUserOperation", format_user_operation(op), acct.ep.address)


def inflight_rows(data_dir) -> list[dict]:
    conn = sqlite3.connect(os.path.join(data_dir, "bundler.sqlite"))
    try:
        rows = conn.execute("SELECT executor, nonce, attempts FROM inflight").fetchall()
    finally:
        conn.close()
    return [{"executor": r[0], "nonce": r[1], "attempts": orjson.loads(r[2])} for r in rows]


def executor_txs_in_pool(chain, key: str) -> dict:
    pending = rpc(chain.url, "txpool_content", [])["pending"]
    address = Account.from_key(key).address.lower()
    return next((txs for sender, txs in pending.items() if sender.lower() == address), {})


@pytest.fixture
def automine(chain):
    def set_(on: bool) -> None:
        rpc(chain.url, "evm_setAutomine", [on])
    yield set_
    set_(True)


def test_pending_ops_survive_sigkill(chain, tmp_path):
    key = new_executor(chain)
    data = tmp_path / "data"
    accts = [chain.account(V07), chain.account(V08), chain.account(V07)]
    b = BundlerProcess(chain.url, data, key)
    try:
        queued = accts[0]
        start = queued.nonce()
        hashes = [send(b, chain, queued, start), send(b, chain, queued, start + 1)]  # queued nonces
        hashes += [send(b, chain, a) for a in accts[1:]]
    finally:
        b.kill()  # right after the last acknowledgement

    # while the bundler is down, one op becomes invalid: its account can no longer pay
    doomed = hashes[-1]
    rpc(chain.url, "anvil_setBalance", [accts[2].address, "0x0"])
    mine(chain.url)

    b = BundlerProcess(chain.url, data, key)
    try:
        for h in hashes[:-1]:
            found = b.call("eth_getUserOperationByHash", h)
            assert found is not None and found["transactionHash"] is None, h
            assert b.call("eth_getUserOperationReceipt", h) is None
        with pytest.raises(RpcFailure) as e:
            b.call("eth_getUserOperationReceipt", doomed)
        assert e.value.code == -32500 and "AA21" in e.value.message and "dropped" in e.value.message
        assert len(b.call("debug_bundler_dumpMempool", V07.address)) == 2
        assert len(b.call("debug_bundler_dumpMempool", V08.address)) == 1

        b.call("debug_bundler_sendBundleNow", timeout=60)
        for h in hashes[:-1]:
            receipt = b.call("eth_getUserOperationReceipt", h)
            assert receipt is not None and receipt["success"] is True, h
        assert queued.nonce() == start + 2
        assert b.call("debug_bundler_dumpMempool", V07.address) == []
    finally:
        b.stop()

    # a clean restart afterwards: everything is still answered from the store
    b = BundlerProcess(chain.url, data, key)
    try:
        for h in hashes[:-1]:
            assert b.call("eth_getUserOperationByHash", h)["transactionHash"] is not None
        with pytest.raises(RpcFailure) as e:
            b.call("eth_getUserOperationByHash", doomed)
        assert e.value.code == -32500
    finally:
        b.stop()


@pytest.mark.parametrize("mine_while_down", [False, True], ids=["mined-after-restart", "mined-while-down"])
def test_in_flight_bundle_survives_sigkill(chain, tmp_path, automine, mine_while_down):
    key = new_executor(chain)
    data = tmp_path / "data"
    accts = [chain.account(V07), chain.account(V07)]
    nonce_before = executor_nonce(chain, key)
    b = BundlerProcess(chain.url, data, key, "--tx-replace-after-s", "300")
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        hashes = [send(b, chain, a) for a in accts]
        automine(False)
        pending_call = pool.submit(b.call, "debug_bundler_sendBundleNow", timeout=120)
        txs = wait_for(lambda: executor_txs_in_pool(chain, key), what="the bundle in the node's pool")
        [(nonce, tx)] = txs.items()
        assert int(nonce) == nonce_before
    finally:
        b.kill()  # the bundle is in flight: sent, not mined
        pool.shutdown(wait=True)
    assert pending_call.exception() is not None  # the caller never got an answer
    [row] = inflight_rows(data)
    assert row["nonce"] == nonce_before and [a["txHash"] for a in row["attempts"]] == [tx["hash"]]

    if mine_while_down:
        rpc(chain.url, "evm_mine", [])
    b = BundlerProcess(chain.url, data, key, "--tx-replace-after-s", "300")
    try:
        if not mine_while_down:
            for h in hashes:  # still in flight: pending, no transaction yet
                assert b.call("eth_getUserOperationByHash", h)["transactionHash"] is None
            assert b.call("debug_bundler_sendBundleNow") == "ok"  # nothing else to bundle, nothing re-sent
            assert list(executor_txs_in_pool(chain, key)) == [nonce]
            rpc(chain.url, "evm_mine", [])
        for h in hashes:
            receipt = wait_for(lambda: b.call("eth_getUserOperationReceipt", h), what="the op's receipt")
            assert receipt["success"] is True and receipt["receipt"]["transactionHash"] == tx["hash"]
            assert b.call("eth_getUserOperationByHash", h)["transactionHash"] == tx["hash"]
        wait_for(lambda: inflight_rows(data) == [], what="the in-flight record to be cleared")
        automine(True)
        assert executor_nonce(chain, key) == nonce_before + 1  # one transaction, never a second one
    finally:
        b.stop()


@pytest.mark.parametrize("fault", ["before_send", "after_send"])
def test_killed_around_the_broadcast(chain, tmp_path, fault):
    """Killed after the signed transaction is stored but before it reached the node, or just
    after: the restarted bundler broadcasts the same bytes again (or finds them mined)."""
    key = new_executor(chain)
    data = tmp_path / "data"
    acct = chain.account(V08)
    nonce_before = executor_nonce(chain, key)
    b = BundlerProcess(chain.url, data, key, env={"BUNDLER_FAULT": fault})
    try:
        h = send(b, chain, acct)
        with pytest.raises(OSError):
            b.call("debug_bundler_sendBundleNow")
        assert b.wait_dead() == -9
    finally:
        b.kill()
    [row] = inflight_rows(data)
    [attempt] = row["attempts"]
    if fault == "before_send":
        assert rpc(chain.url, "eth_getTransactionByHash", [attempt["txHash"]]) is None
        assert executor_nonce(chain, key) == nonce_before
    else:
        assert rpc(chain.url, "eth_getTransactionReceipt", [attempt["txHash"]]) is not None

    b = BundlerProcess(chain.url, data, key)
    try:
        receipt = wait_for(lambda: b.call("eth_getUserOperationReceipt", h), what="the op's receipt")
        assert receipt["success"] is True and receipt["receipt"]["transactionHash"] == attempt["txHash"]
        assert executor_nonce(chain, key) == nonce_before + 1
        wait_for(lambda: inflight_rows(data) == [], what="the in-flight record to be cleared")
    finally:
        b.stop()


def test_data_dir_is_bound_to_one_process_and_one_chain(chain, tmp_path):
    key = new_executor(chain)
    data = tmp_path / "data"
    b = BundlerProcess(chain.url, data, key)
    try:
        with pytest.raises(RuntimeError, match="in use by another bundler process"):
            BundlerProcess(chain.url, data, key)
    finally:
        b.stop()
    other = DevChain.start()
    try:
        with pytest.raises(RuntimeError, match="belongs to chain"):
            BundlerProcess(other.url, data, key)
    finally:
        other.stop()
