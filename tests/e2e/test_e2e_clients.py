"""End-to-end: real ERC-4337 clients from npm (viem, permissionless), unchanged, against our bundler.

Each test runs tests/e2e/clients.mjs with node against the shared anvil and the shared bundler,
switched to auto bundling for the duration of the test (the clients only send ops and poll for
receipts, as an app would). The script prints one JSON line per check and exits non-zero on the
first failure with the JSON-RPC error the bundler returned."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tests" / "e2e" / "clients.mjs"
TIMEOUT_S = 120

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not on PATH")


@pytest.fixture
async def auto_bundler(bundler, rpc):
    """The shared bundler, emptied, bundling by itself; back to manual mode afterwards."""
    await rpc.call("debug_bundler_clearState")
    await rpc.call("debug_bundler_setBundlingMode", "auto")
    try:
        yield bundler
    finally:
        await rpc.call("debug_bundler_setBundlingMode", "manual")


async def run_clients(client: str, bundler_url: str, node_url: str) -> tuple[int, str, str]:
    env = dict(os.environ, BUNDLER_URL=bundler_url, NODE_URL=node_url, E2E_CLIENT=client)
    proc = await asyncio.create_subprocess_exec(
        NODE, str(SCRIPT.relative_to(REPO)), "--client", client, "--bundler", bundler_url, "--node", node_url,
        cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=TIMEOUT_S)
    except asyncio.TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        return -1, out.decode(errors="replace"), err.decode(errors="replace") + f"\n(timed out after {TIMEOUT_S} s)"
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def report(code: int, out: str, err: str) -> str:
    lines = []
    for line in out.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            lines.append(line)
            continue
        if entry.get("ok"):
            lines.append(f"  ok   {entry.get('check')}")
        else:
            lines.append(f"  FAIL {json.dumps(entry, indent=2)}")
    return f"clients.mjs exited with {code}\n--- stdout\n" + "\n".join(lines) + f"\n--- stderr\n{err}"


def checks(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


async def _run(client: str, anvil, bundler) -> None:
    code, out, err = await run_clients(client, bundler.url, anvil.url)
    assert code == 0, report(code, out, err)
    done = [c for c in checks(out) if c.get("check") == f"{client}: done"]
    assert done and done[0]["ok"], report(code, out, err)


async def test_viem_bundler_client_v08(anvil, auto_bundler):
    """viem createBundlerClient + permissionless SimpleAccount on EntryPoint v0.8: deploy op, plain op."""
    await _run("viem-v08", anvil, auto_bundler)


async def test_viem_bundler_client_v09_eip7702(anvil, auto_bundler):
    """viem createBundlerClient + viem's Simple7702Account on EntryPoint v0.9 (all viem defaults:
    canonical EntryPoint and delegate addresses): the first op carries the authorization and
    delegates the EOA, the second is a plain op. (permissionless 0.4.1 has no v0.9 account.)"""
    await _run("viem-v09", anvil, auto_bundler)


async def test_permissionless_smart_account_client_v07(anvil, auto_bundler):
    """permissionless createSmartAccountClient + SimpleAccount on EntryPoint v0.7: deploy op, plain op."""
    await _run("permissionless-v07", anvil, auto_bundler)
