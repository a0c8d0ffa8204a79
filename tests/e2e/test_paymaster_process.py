"""The paymaster as operators and app developers meet it, in real processes:

- `bundler dev` deploys SponsorPaymaster at fixed CREATE2 addresses, funds its deposit, prints
  it, and sponsors an op from an unfunded counterfactual account with no policy named;
- `bundler run` with the signer key in a key file or BUNDLER_PAYMASTER_SIGNER_KEY: the key is
  nowhere (command lines, worker environments, log, /health, /metrics, error answers), a bad
  key is reported by its source, and a low deposit makes /health degraded."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from eth_abi import encode
from eth_account import Account

from bundler.cli import DEV_PAYMASTER_DEPOSIT, DEV_PAYMASTER_SIGNER_KEY
from bundler.devchain import ANVIL_ACCOUNT0, free_port
from bundler.devchain.anvil import rpc as node_rpc
from bundler.devchain.paymaster import deploy_paymaster, fund_paymaster, paymaster_address
from bundler.entrypoint import V07, V08, V09
from bundler.userop import format_user_operation, decode_user_operation

from helpers.accounts import SEL_BALANCE_OF, SimpleAccountHelper, mine
from helpers.procs import BundlerProcess, RpcFailure, call, wait_for
from test_keys_subprocess import _children

SIGNER_KEY = "0x" + "d4" * 32


def _secret_forms(key: str) -> list[str]:
    return [key[2:].lower(), key[2:].upper()]


def _http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_bundler_dev_deploys_funds_and_sponsors_everything(tmp_path):
    port, node_port = free_port(), free_port()
    out_path = tmp_path / "dev.out"
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bundler.cli", "dev", "--port", str(port), "--node-port", str(node_port),
             "--sim-workers", "1"],
            env={k: v for k, v in os.environ.items() if not k.startswith("BUNDLER_")},
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: proc.poll() is not None or "Ctrl-C stops" in out_path.read_text(), timeout=120,
                 what="bundler dev to print its addresses")
        text = out_path.read_text()
        assert proc.poll() is None, text
        printed = dict(re.findall(r"SponsorPaymaster v(0\.[789])\s+(0x[0-9a-fA-F]{40})", text))
        signer = Account.from_key(DEV_PAYMASTER_SIGNER_KEY).address
        for ep in (V07, V08, V09):
            assert printed[ep.version].lower() == paymaster_address(ep, signer, ANVIL_ACCOUNT0), text
            deposit = node_rpc(f"http://127.0.0.1:{node_port}", "eth_call", [{
                "to": ep.address, "data": "0x" + (SEL_BALANCE_OF + encode(["address"], [printed[ep.version]])).hex()},
                "latest"])
            assert int(deposit, 16) == DEV_PAYMASTER_DEPOSIT
        assert "default policy sponsor-everything" in text

        # an app with no funds and no policy: sponsored
        url, node = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{node_port}"
        factory = "0x13e9ed32155810fdbd067d4522c492d6f68e5944"  # SimpleAccountFactory v0.8 (README)
        acct = SimpleAccountHelper.counterfactual(node, V08, factory)
        op = format_user_operation(acct.op(acct.execute("0x" + "77" * 20, 0, b"\x01")))
        op.update(call(url, "pm_getPaymasterData", op, V08.address, hex(1337), None))
        signed = format_user_operation(acct.sign(decode_user_operation(op), 1337))
        op_hash = call(url, "eth_sendUserOperation", signed, V08.address)
        receipt = wait_for(lambda: call(url, "eth_getUserOperationReceipt", op_hash), timeout=60,
                           what="the sponsored op to be mined by bundler dev")
        assert receipt["success"] and receipt["paymaster"].lower() == printed["0.8"].lower()
        assert node_rpc(node, "eth_getBalance", [acct.address, "latest"]) == "0x0"

        # v0.9, the paymaster signature outside the userOpHash: the account signs first
        factory09 = re.search(r"EntryPoint v0\.9\s+\S+\s+SimpleAccountFactory\s+(0x[0-9a-fA-F]{40})", text).group(1)
        acct = SimpleAccountHelper.counterfactual(node, V09, factory09)
        op = format_user_operation(acct.op(acct.execute("0x" + "79" * 20, 0, b"\x01")))
        ctx = {"separateSignature": True}
        op.update(call(url, "pm_getPaymasterStubData", op, V09.address, hex(1337), ctx))
        del op["sponsor"], op["isFinal"]
        signed = format_user_operation(acct.sign(decode_user_operation(op), 1337))
        signed.update(call(url, "pm_getPaymasterData", signed, V09.address, hex(1337), ctx))
        op_hash = call(url, "eth_sendUserOperation", signed, V09.address)
        receipt = wait_for(lambda: call(url, "eth_getUserOperationReceipt", op_hash), timeout=60,
                           what="the v0.9 sponsored op to be mined by bundler dev")
        assert receipt["success"] and receipt["paymaster"].lower() == printed["0.9"].lower()
        assert node_rpc(node, "eth_getBalance", [acct.address, "latest"]) == "0x0"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_signer_key_never_shows_and_low_deposit_degrades_health(anvil, tmp_path):
    signer = Account.from_key(SIGNER_KEY).address
    contracts = []
    for ep in (V07, V08):
        address = deploy_paymaster(anvil.url, ep, signer, salt=b"\x00" * 31 + b"\x99")
        fund_paymaster(anvil.url, address, 10**15)  # below the minimum below
        contracts += ["--paymaster-contracts", f"{ep.version}={address}"]
    mine(anvil.url)
    key_file = tmp_path / "pm.key"
    key_file.write_text(f"# paymaster signer\n{SIGNER_KEY}\n")
    executor = "0x" + os.urandom(32).hex()
    node_rpc(anvil.url, "anvil_setBalance", [Account.from_key(executor).address, hex(10**20)])
    proc = BundlerProcess(anvil.url, tmp_path / "data", executor, "--paymaster-signer-key-file", str(key_file),
                          *contracts, "--paymaster-default-policy", "sponsor-everything",
                          "--paymaster-min-deposit", str(10**17), "--log-level", "debug", "--log-format", "json")
    try:
        for pid in [proc.proc.pid, *_children(proc.proc.pid)]:
            for secret in _secret_forms(SIGNER_KEY):
                assert secret not in open(f"/proc/{pid}/cmdline").read()
                assert secret not in open(f"/proc/{pid}/environ", "rb").read().decode(errors="replace")
        status, health = _http_get(proc.url + "/health")
        report = json.loads(health)
        assert status == 200 and report["status"] == "degraded", health
        assert any("--paymaster-min-deposit" in w and contracts[1].split("=")[1] in w for w in report["warnings"])
        _status, metrics = _http_get(proc.url + "/metrics")
        assert re.search(r'bundler_paymaster_deposit_wei\{entry_point="0.7",paymaster="0x[0-9a-f]{40}"\} 1e\+15', metrics)
        acct = SimpleAccountHelper.counterfactual(anvil.url, V07, anvil.deployment.factories["0.7"])
        op = format_user_operation(acct.op(b""))
        answer = proc.call("pm_getPaymasterData", op, V07.address, hex(anvil.chain_id), None)
        assert answer["paymaster"].lower() == contracts[1].split("=")[1]
        with pytest.raises(RpcFailure) as err:
            proc.call("pm_getPaymasterData", dict(op, sender="0x1"), V07.address, hex(anvil.chain_id), None)
        assert err.value.code == -32602
        error_text = json.dumps({"code": err.value.code, "message": err.value.message, "data": err.value.data})
        for text in (health, metrics, error_text, json.dumps(answer)):
            for secret in _secret_forms(SIGNER_KEY):
                assert secret not in text
    finally:
        proc.stop()
    log = proc.log_path.read_text()
    for secret in _secret_forms(SIGNER_KEY):
        assert secret not in log
    assert "paymaster: signer " + signer.lower() in log


def test_a_bad_signer_key_is_reported_by_its_source_not_its_text(anvil, tmp_path):
    bad = "0x" + "zz" * 32
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUNDLER_")}
    env.update(BUNDLER_PRIVATE_KEY="0x" + "5e" * 32, BUNDLER_PAYMASTER_SIGNER_KEY=bad)
    out = subprocess.run([sys.executable, "-m", "bundler.cli", "run", "--rpc-url", anvil.url, "--port",
                          str(free_port()), "--data-dir", str(tmp_path / "d")],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "--paymaster-signer-key / BUNDLER_PAYMASTER_SIGNER_KEY is not a valid" in out.stderr, out.stderr
    assert "zz" * 32 not in out.stderr + out.stdout
