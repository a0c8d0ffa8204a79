"""`bundler run` as a real process with executor keys from the environment, a key file and an
encrypted keystore: the keys (and the keystore password) appear nowhere another user or a log
reader could see them: not in /proc/<pid>/cmdline of the bundler or its workers, not in the
workers' environment, not in the log lines, metrics, health or error answers. The JSON log
lines carry the op hash."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from eth_account import Account
from eth_hash.auto import keccak

from bundler.devchain import free_port
from bundler.devchain.anvil import rpc as node_rpc
from bundler.entrypoint import V07
from helpers.bundlers import funded_account, signed_op

ENV_KEYS = ["0x" + keccak(f"env executor {i}".encode()).hex() for i in range(2)]
FILE_KEY = "0x" + keccak(b"file executor").hex()
KEYSTORE_KEY = "0x" + keccak(b"keystore executor").hex()
PASSWORD = "correct horse battery staple 4337"
ALL_KEYS = ENV_KEYS + [FILE_KEY, KEYSTORE_KEY]
BUNDLER = str(Path(sys.executable).with_name("bundler"))


def _secrets() -> list[str]:
    out = [PASSWORD]
    for k in ALL_KEYS:
        out += [k[2:].lower(), k[2:].upper()]
    return out


def _assert_clean(where: str, text: str) -> None:
    for secret in _secrets():
        assert secret not in text, f"a secret appears in {where}"


def _http(method: str, url: str, body: dict | None = None) -> tuple[int, str]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data, {"Content-Type": "application/json"}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _rpc(url: str, method: str, *params):
    _status, text = _http("POST", url, {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    return json.loads(text)


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                out.append(int(entry.name))
    return out


@pytest.fixture
def key_files(tmp_path):
    keyfile = tmp_path / "keys.txt"
    keyfile.write_text(f"# executor keys\n{FILE_KEY}\n\n{ENV_KEYS[0]}\n")  # a repeated key is used once
    keyfile.chmod(0o600)
    keystore = tmp_path / "keystore.json"
    keystore.write_text(json.dumps(Account.encrypt(KEYSTORE_KEY, PASSWORD, kdf="pbkdf2", iterations=1000)))
    return keyfile, keystore


def test_keys_from_env_file_and_keystore_never_show(anvil, key_files, tmp_path):
    keyfile, keystore = key_files
    for k in ALL_KEYS:
        node_rpc(anvil.url, "anvil_setBalance", [Account.from_key(k).address, hex(10**20)])
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, BUNDLER_PRIVATE_KEY=",".join(ENV_KEYS), BUNDLER_KEYSTORE_PASSWORD=PASSWORD)
    log_path = tmp_path / "bundler.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [BUNDLER, "run", "--rpc-url", anvil.url, "--port", str(port), "--sim-workers", "1",
             "--private-key-file", str(keyfile), "--keystore-file", str(keystore), "--debug-api",
             "--bundle-mode", "manual", "--log-level", "debug", "--log-format", "json",
             "--data-dir", str(tmp_path / "data")],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                if _http("GET", url + "/health")[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert time.monotonic() < deadline, "bundler did not come up"
            time.sleep(0.2)

        # what `ps` shows, for the bundler and its simulation workers; the workers' environment
        _assert_clean("the bundler's command line", Path(f"/proc/{proc.pid}/cmdline").read_text())
        workers = _children(proc.pid)
        assert workers, "no simulation worker process found"
        for w in workers:
            _assert_clean(f"worker {w}'s command line", Path(f"/proc/{w}/cmdline").read_text())
            _assert_clean(f"worker {w}'s environment", Path(f"/proc/{w}/environ").read_bytes().decode(errors="replace"))

        # all four executors are in use, and nowhere is a key
        status, health = _http("GET", url + "/health")
        assert status == 200
        executors = {e["address"] for e in json.loads(health)["executors"]}
        assert executors == {Account.from_key(k).address.lower() for k in ALL_KEYS}
        _assert_clean("/health", health)

        acct = funded_account(anvil, V07)
        op_hash = _rpc(url, "eth_sendUserOperation", signed_op(anvil, acct), V07.address)["result"]
        bad = _rpc(url, "eth_sendUserOperation", dict(signed_op(anvil, acct), signature="0x1234"), V07.address)
        assert "error" in bad
        _assert_clean("an error answer", json.dumps(bad))
        tx_hash = _rpc(url, "debug_bundler_sendBundleNow")["result"]
        assert _rpc(url, "eth_getUserOperationReceipt", op_hash)["result"]["receipt"]["transactionHash"] == tx_hash
        _status, metrics = _http("GET", url + "/metrics")
        assert "bundler_executor_balance_wei" in metrics
        _assert_clean("/metrics", metrics)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    text = log_path.read_text()
    _assert_clean("the log", text)
    records = [json.loads(line) for line in text.splitlines() if line.strip()]  # every line is JSON
    assert any("settings" in r["message"] and "<redacted>" in r["message"] for r in records)
    admitted = [r for r in records if r["message"].startswith("admitted op")]
    assert admitted and admitted[0]["op_hash"] == op_hash
    sent = [r for r in records if r["message"].startswith("sent bundle")]
    assert sent and op_hash in sent[0]["op_hashes"]
    # the key repeated in the key file was used once, with a warning naming where it was
    assert any("repeats executor" in r["message"] and "keys.txt" in r["message"] for r in records)


def test_a_key_on_the_command_line_is_warned_about_and_start_failures_are_one_line():
    out = subprocess.run([BUNDLER, "run", "--rpc-url", "http://127.0.0.1:1", "--private-key", ENV_KEYS[0],
                          "--port", str(free_port())],
                         env={k: v for k, v in os.environ.items() if not k.startswith("BUNDLER_")},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "a secret was given on the command line, where `ps` shows it" in out.stderr
    assert "cannot start: node unreachable" in out.stderr and "Traceback" not in out.stderr
    assert "Unclosed" not in out.stderr
    assert ENV_KEYS[0][2:] not in out.stderr


def test_a_bad_key_is_reported_by_its_source_not_its_text(anvil, tmp_path):
    bad = "0x" + "zz" * 32
    short = "0x" + "ab" * 31
    env = dict(os.environ, BUNDLER_PRIVATE_KEY=f"{ENV_KEYS[0]},{bad}")
    out = subprocess.run([BUNDLER, "run", "--rpc-url", anvil.url, "--port", str(free_port())],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "executor key #2 of --private-key / BUNDLER_PRIVATE_KEY is not a valid" in out.stderr
    assert "zz" * 32 not in out.stderr + out.stdout and ENV_KEYS[0][2:] not in out.stderr + out.stdout

    keyfile = tmp_path / "keys.txt"
    keyfile.write_text(f"{ENV_KEYS[1]}\n{short}\n")
    out = subprocess.run([BUNDLER, "run", "--rpc-url", anvil.url, "--private-key-file", str(keyfile)],
                         env={k: v for k, v in os.environ.items() if not k.startswith("BUNDLER_")},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and f"line 2 of {keyfile} is not a valid" in out.stderr
    assert "ab" * 31 not in out.stderr and ENV_KEYS[1][2:] not in out.stderr

    keystore = tmp_path / "ks.json"
    keystore.write_text(json.dumps(Account.encrypt(KEYSTORE_KEY, PASSWORD, kdf="pbkdf2", iterations=1000)))
    pw = tmp_path / "pw.txt"
    pw.write_text("hunter2-not-it\n")
    out = subprocess.run([BUNDLER, "run", "--rpc-url", anvil.url, "--keystore-file", str(keystore),
                          "--keystore-password-file", str(pw)],
                         env={k: v for k, v in os.environ.items() if not k.startswith("BUNDLER_")},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and f"cannot decrypt keystore file {keystore}" in out.stderr
    assert "hunter2-not-it" not in out.stderr
