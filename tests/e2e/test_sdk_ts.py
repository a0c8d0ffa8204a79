"""The TypeScript SDK's own tests (sdk/ts/test, node's built-in runner) as part of `make test`.

They start their own `bundler dev` (from this checkout's sources) and drive viem's
createBundlerClient and permissionless' createSmartAccountClient with toSessionAccount. The
package is compiled first with the pinned tsc, so the tests run against the sources."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not on PATH")


def build_ts_sdk() -> None:
    tsc = REPO / "node_modules" / ".bin" / "tsc"
    done = subprocess.run([str(tsc), "-p", "sdk/ts/tsconfig.json"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"tsc failed:\n{done.stdout}\n{done.stderr}"


def run_node_tests(*paths: str, timeout: float = 900) -> None:
    done = subprocess.run([NODE, "--test", "--test-concurrency=1", "--test-reporter=spec", *paths], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"node --test {' '.join(paths)} exited with {done.returncode}:\n{done.stdout[-30000:]}\n{done.stderr[-5000:]}"
    passed = re.search(r"(?:ℹ|#) pass (\d+)", done.stdout)
    assert passed and int(passed.group(1)) > 0, f"no test ran:\n{done.stdout[-5000:]}"


def test_ts_sdk_install_pins():
    run_node_tests("sdk/ts/test/install.test.mjs", timeout=120)


def test_ts_sdk_end_to_end():
    build_ts_sdk()
    run_node_tests("sdk/ts/test/sdk.test.mjs")


def test_ts_sdk_relay_client():
    """createRelayClient against bundler dev's session relay (sdk/ts/test/relay.test.mjs)."""
    build_ts_sdk()
    run_node_tests("sdk/ts/test/relay.test.mjs", timeout=300)


def test_ts_sdk_erc1271():
    """The owner's ERC-1271 / ERC-7739 signatures through viem's verifyMessage / verifyTypedData
    against accounts on bundler dev's chain (sdk/ts/test/erc1271.test.mjs)."""
    build_ts_sdk()
    run_node_tests("sdk/ts/test/erc1271.test.mjs", timeout=300)
