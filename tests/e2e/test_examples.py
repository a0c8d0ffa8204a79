"""The runnable examples (examples/ts: the app side, TypeScript; examples/python: the backend
side), one test per flow, against a `bundler dev` started for this module. The app hands the
backend one string (serializeSession / permissionsContext); each script prints one JSON line per
step and the tests assert what a user would check. Backend scripts run with only sdk/python on
the path: no bundler, no py-evm."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from eth_account import Account

from helpers.dev import REPO, python_path, start_dev_bundler
from helpers.procs import call

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not on PATH")
TIMEOUT_S = 180


@pytest.fixture(scope="module")
def dev():
    done = subprocess.run([str(REPO / "node_modules/.bin/tsc"), "-p", "sdk/ts/tsconfig.json"], cwd=REPO,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    done = subprocess.run([str(REPO / "node_modules/.bin/tsc"), "-p", "examples/ts/tsconfig.json"], cwd=REPO,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    d = start_dev_bundler()
    try:
        yield d
    finally:
        d.stop()


def steps(out: str) -> dict[str, dict]:
    return {s["step"]: s for s in (json.loads(line) for line in out.splitlines() if line.startswith("{"))}


def _run(cmd: list[str], env: dict) -> dict[str, dict]:
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, f"{' '.join(cmd[:3])} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return steps(done.stdout)


def app(dev, script: str, *args: str, owner_key: str | None = None) -> dict[str, dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUNDLER_")}
    if owner_key:
        env["OWNER_KEY"] = owner_key  # secrets through the environment, never the command line
    return _run([NODE, f"examples/ts/{script}.js", *args, "--bundler", dev.bundler_url, "--node", dev.node_url], env)


def backend(dev, script: str, command: str, *args: str) -> dict[str, dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUNDLER_")}
    env["PYTHONPATH"] = python_path("sdk/python")
    return _run([sys.executable, f"examples/python/{script}.py", command, "--bundler", dev.bundler_url,
                 "--node", dev.node_url, *args], env)


def backend_key(dev, script: str, tmp_path, name: str = "backend.key") -> tuple[str, str]:
    key_file = str(tmp_path / name)
    address = backend(dev, script, "keygen", "--key-file", key_file)["key"]["address"]
    assert oct(os.stat(key_file).st_mode & 0o777) == "0o600"
    return key_file, address


def new_owner_key() -> str:
    return "0x" + bytes(Account.create().key).hex()


def eth_balance(dev, address: str) -> int:
    return int(call(dev.node_url, "eth_getBalance", address, "latest"), 16)


def test_flow1_backend_key_any_target_no_eth_3_hours_sponsored(dev, tmp_path):
    """Sponsored on the dev chain: the account never holds ETH (not before, not after its first op
    deployed it) and has no EntryPoint deposit; the receipt names bundler dev's SponsorPaymaster."""
    key_file, backend_address = backend_key(dev, "backend_key", tmp_path)
    sponsor = dev.paymasters["0.7"]
    granted = app(dev, "backend_key", "--factory", dev.entry_points["0.7"]["SessionAccountFactory"],
                  "--backend", backend_address, "--sponsor", sponsor)["granted"]
    assert granted["deployed"] is False and granted["accountWei"] == "0"
    now = int(call(dev.node_url, "eth_getBlockByNumber", "latest", False)["timestamp"], 16)
    assert 3 * 3600 - 60 <= granted["validUntil"] - now <= 3 * 3600
    out = backend(dev, "backend_key", "run", "--token", dev.token, "--key-file", key_file, "--session", granted["session"],
                  "--paymaster", dev.bundler_url)
    minted = out["minted"]
    assert minted == {"step": "minted", "success": True, "deployedBefore": False, "deployedNow": True, "balance": 1000,
                      "paymaster": minted["paymaster"], "accountWei": 0, "depositWei": 0}
    assert minted["paymaster"].lower() == sponsor.lower()
    assert eth_balance(dev, granted["account"]) == 0
    refused = out["value-call"]
    assert refused["refused"] is True and refused["rule"] == "SessionValueExceedsPerUse"
    assert refused["limit"] == 0 and refused["requested"] == 10**15 and refused["code"] == -32500


def test_flow2_eip7702_call_transfer_amount_and_full_permissions_sponsored(dev, tmp_path):
    """Sponsored on the dev chain: the EOA is funded with exactly the 0.06 ETH its sessions
    transfer and ends with 0 (its delegation op and every session op paid by the paymaster)."""
    limited_key, limited = backend_key(dev, "eip7702", tmp_path, "limited.key")
    full_key, full = backend_key(dev, "eip7702", tmp_path, "full.key")
    recipient = Account.create().address
    owner = new_owner_key()
    impl = dev.entry_points["0.8"]["SessionAccount"]
    sponsor = dev.paymasters["0.8"]
    granted = app(dev, "eip7702", "--implementation", impl, "--token", dev.token, "--backend", limited,
                  "--full", full, "--to", recipient, "--sponsor", sponsor, owner_key=owner)["granted"]
    assert granted["success"] is True
    assert granted["account"] == Account.from_key(owner).address
    assert granted["code"].lower() == "0xef0100" + impl[2:].lower()
    assert granted["paymaster"].lower() == sponsor.lower() and granted["accountWei"] == str(6 * 10**16)
    paymaster = ("--paymaster", dev.bundler_url)
    out = backend(dev, "eip7702", "run", "--token", dev.token, "--to", recipient, "--key-file", limited_key,
                  "--session", granted["limited"], *paymaster)
    assert out["transfer-50"] == {"step": "transfer-50", "success": True, "recipientTokens": 50}
    assert out["transfer-60"]["refused"] is True and out["transfer-60"]["rule"] == "SessionArgConstraintFailed"
    assert out["eth-0.01"]["success"] is True and out["eth-0.01"]["paymaster"].lower() == sponsor.lower()
    assert out["eth-0.01"]["accountWei"] == 5 * 10**16
    out = backend(dev, "eip7702", "full", "--token", dev.token, "--to", recipient, "--key-file", full_key,
                  "--session", granted["full"], *paymaster)
    assert out["full-batch"] == {"step": "full-batch", "success": True, "recipientTokens": 150,
                                 "paymaster": out["full-batch"]["paymaster"], "accountWei": 0}
    assert out["full-batch"]["paymaster"].lower() == sponsor.lower()
    assert int(call(dev.node_url, "eth_getBalance", recipient, "latest"), 16) == 6 * 10**16
    assert eth_balance(dev, granted["account"]) == 0


def test_flow3_remote_backend_methods_value_limits_revoked_pending_dropped(dev, tmp_path):
    """Gas sponsored: the account's 1 ETH pays only the 0.001 ETH deposit."""
    key_file, backend_address = backend_key(dev, "remote_backend", tmp_path)
    owner = new_owner_key()
    sponsor = dev.paymasters["0.7"]
    granted = app(dev, "remote_backend", "grant", "--factory", dev.entry_points["0.7"]["SessionAccountFactory"],
                  "--token", dev.token, "--backend", backend_address, "--sponsor", sponsor, owner_key=owner)["granted"]
    assert granted["success"] is True
    session = ["--key-file", key_file, "--session", granted["session"], "--paymaster", dev.bundler_url]
    out = backend(dev, "remote_backend", "run", "--token", dev.token, *session)
    assert out["deposit"]["success"] is True and out["deposit"]["paymaster"].lower() == sponsor.lower()
    assert out["deposit"]["accountWei"] == 10**18 - 10**15
    assert out["deposit-too-much"] == {"step": "deposit-too-much", "refused": True, "rule": "SessionValueExceedsPerUse",
                                       "limit": 10**15}
    # hold bundling (a dev-chain switch) so the next ops are still pending when the owner revokes
    call(dev.bundler_url, "debug_bundler_setBundlingMode", "manual")
    try:
        hashes = backend(dev, "remote_backend", "queue", "--token", dev.token, *session)["queued"]["hashes"]
        assert len(hashes) == 2
        revoked = app(dev, "remote_backend", "revoke", "--account", granted["account"], "--backend", backend_address,
                      owner_key=owner)["revoked"]
        assert revoked["success"] is True and revoked["status"] == "revoked"
        fates = backend(dev, "remote_backend", "wait", *session, "--hashes", *hashes)["fates"]["fates"]
    finally:
        call(dev.bundler_url, "debug_bundler_setBundlingMode", "auto")
    assert [f["dropped"] for f in fates] == [True, True]
    assert all(f["code"] == -32500 and "revoked" in f["reason"] for f in fates), fates


def test_flow4_erc7715_grant_window_and_usage_limit_sponsored(dev, tmp_path):
    """The account is never funded: the 7715 grant names the SponsorPaymaster beside the request,
    the backend's first op deploys the account, every op is paid by the paymaster."""
    key_file, backend_address = backend_key(dev, "erc7715", tmp_path)
    sponsor = dev.paymasters["0.8"]
    granted = app(dev, "erc7715", "--factory", dev.entry_points["0.8"]["SessionAccountFactory"], "--token", dev.token,
                  "--backend", backend_address, "--sponsor", sponsor)["granted"]
    assert granted["usageLimit"] == 3 and granted["validUntil"] - granted["validAfter"] == 1860
    out = backend(dev, "erc7715", "run", "--token", dev.token, "--key-file", key_file,
                  "--session", granted["permissionsContext"], "--paymaster", dev.bundler_url)
    assert out["mint"]["success"] is True and out["mint"]["paymaster"].lower() == sponsor.lower()  # the last mint
    assert out["fourth"]["refused"] is True and out["fourth"]["rule"] == "SessionUsageLimitReached"
    assert (out["balance"]["tokens"], out["balance"]["accountWei"]) == (30, 0)


def test_flow5_one_click_trading_crossing_trade_shows_remaining_sponsored(dev, tmp_path):
    key_file, backend_address = backend_key(dev, "trading", tmp_path)
    dex = Account.create().address
    granted = app(dev, "trading", "--factory", dev.entry_points["0.7"]["SessionAccountFactory"], "--token", dev.token,
                  "--dex", dex, "--backend", backend_address, "--sponsor", dev.paymasters["0.7"])["granted"]
    out = backend(dev, "trading", "run", "--token", dev.token, "--to", dex, "--key-file", key_file,
                  "--session", granted["session"], "--paymaster", dev.bundler_url)
    assert out["trade"]["paymaster"].lower() == dev.paymasters["0.7"].lower()  # the last trade's receipt
    assert out["dex"]["accountWei"] == 0 and eth_balance(dev, granted["account"]) == 0
    crossing = out["crossing-trade"]
    assert crossing["refused"] is True and crossing["rule"] == "SessionCumulativeLimitExceeded"
    assert crossing["remaining"] == 10 * 10**18 and crossing["used"] == 90 * 10**18 and crossing["limit"] == 100 * 10**18
    assert out["dex"]["tokens"] == 90 * 10**18
