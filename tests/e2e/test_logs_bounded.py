"""Hostile requests cannot fill the disk through the log: a real `bundler run` process gets
requests carrying megabytes of junk and whole signed ops, and its log grows by a small,
bounded amount per request, with none of what they carried in it."""
from __future__ import annotations

import json
import logging
import os
import urllib.request

from bundler.logs import MAX_MESSAGE_CHARS, MAX_TRACEBACK_CHARS, setup_logging
from helpers.procs import BundlerProcess

N_REQUESTS = 30
PER_REQUEST_BUDGET = 300  # bytes of log per hostile request, at most
MARKER = "c0ffee" * 40  # a run of it in the log would mean a param was logged


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def _hostile_requests(big: str):
    op = {"sender": "0x" + "11" * 20, "nonce": "0x0", "callData": "0x", "signature": "0x" + big}
    yield {"jsonrpc": "2.0", "id": 1, "method": "eth_sendUserOperation", "params": [op, "0x" + "22" * 20]}
    yield {"jsonrpc": "2.0", "id": 2, "method": "eth_sendUserOperation", "params": [dict(op, nonce=big)]}
    yield {"jsonrpc": "2.0", "id": 3, "method": "no_such_" + big[:1000], "params": [big]}
    yield {"jsonrpc": "2.0", "id": 4, "method": "eth_getBalance", "params": [big, "latest"]}
    yield {"jsonrpc": "2.0", "id": 5, "method": "eth_getUserOperationReceipt", "params": [big]}
    yield {"jsonrpc": "2.0", "id": None, "method": "debug_bundler_setBundlingMode", "params": [big]}


def test_hostile_requests_grow_the_log_by_a_bounded_amount(anvil, tmp_path):
    key = "0x" + os.urandom(32).hex()
    b = BundlerProcess(anvil.url, tmp_path / "data", key, log_path=tmp_path / "bundler.log")
    try:
        big = MARKER * (400_000 // len(MARKER))  # 400 KB per string
        _post(b.url, {"jsonrpc": "2.0", "id": 0, "method": "eth_chainId", "params": []})
        before = os.path.getsize(b.log_path)
        sent = 0
        while sent < N_REQUESTS:
            for body in _hostile_requests(big):
                answer = _post(b.url, body)
                assert answer["error"]["code"] < 0 and len(answer["error"]["message"]) < 5000, str(answer)[:300]
                sent += 1
        assert _post(b.url, {"jsonrpc": "2.0", "id": 9, "method": "eth_chainId", "params": []})["result"]
        grown = os.path.getsize(b.log_path) - before
        log_text = b.log()
        assert grown <= PER_REQUEST_BUDGET * sent, (grown, log_text[-3000:])
        assert MARKER not in log_text
    finally:
        b.stop()


def test_every_line_is_cut_to_a_bound(tmp_path):
    """What the bundler itself logs (an exception quoting its input, say) is bounded as well,
    in both log formats."""
    root = logging.getLogger()
    saved = list(root.handlers), root.level, logging.getLogger("pjrpc").level
    try:
        _log_both_formats(tmp_path)
    finally:  # give the test run its own handlers back (pytest's capture among them)
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])
        logging.getLogger("pjrpc").setLevel(saved[2])


def _log_both_formats(tmp_path):
    for fmt in ("text", "json"):
        path = tmp_path / f"log.{fmt}"
        with open(path, "w") as stream:
            setup_logging("info", fmt, stream=stream)
            log = logging.getLogger("bundler.test")
            log.info("a long one: %s", "x" * 1_000_000)
            try:
                raise ValueError("y" * 1_000_000)
            except ValueError:
                log.exception("failed on %s", "z" * 1_000_000)
            logging.getLogger("pjrpc.server.dispatcher").info("method execution error %s", "w" * 1000)
        size = os.path.getsize(path)
        assert size < 2 * MAX_MESSAGE_CHARS + MAX_TRACEBACK_CHARS + 1000, (fmt, size)
        text = path.read_text()
        assert "more characters cut" in text and "ValueError" in text and "w" * 100 not in text
