"""Start and stop anvil (from the npm package) as a child process."""
from __future__ import annotations

import signal
import socket
import os
import subprocess
import time
import urllib.request
import json
from dataclasses import dataclass

from .. import artifacts
from ..lifetime import death_signal_preexec

# anvil's first default account: handed to users and tests, never used by the bundler.
ANVIL_ACCOUNT0_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
ANVIL_ACCOUNT0 = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Anvil:
    process: subprocess.Popen
    port: int
    chain_id: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def rpc(url: str, method: str, params: list, timeout: float = 10.0):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        answer = json.loads(resp.read())
    if "error" in answer:
        raise RuntimeError(f"{method}: {answer['error']}")
    return answer["result"]


def start_anvil(
    port: int | None = None,
    chain_id: int = 1337,
    block_time: float | None = None,
    extra_args: list[str] | None = None,
    log_file=None,
    die_with_parent: bool = False,
) -> Anvil:
    port = port or free_port()
    cmd = [
        artifacts.anvil_binary(),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--chain-id", str(chain_id),
        "--hardfork", "prague",
        "--silent",
    ]
    if block_time:
        cmd += ["--block-time", str(block_time)]
    cmd += extra_args or []
    proc = subprocess.Popen(
        cmd,
        stdout=log_file or subprocess.DEVNULL,
        stderr=subprocess.STDOUT if log_file else subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C goes to us; we stop anvil ourselves
        # if we are killed outright, the kernel stops it (a dev chain outliving its bundler
        # keeps its port). Asked for by `bundler dev`, which starts anvil from its main thread
        # before any other thread exists (the signal follows the starting thread, and a
        # preexec_fn is only safe in a process without other threads)
        preexec_fn=death_signal_preexec() if die_with_parent else None,
        # `bundler dev` starts anvil before it reads (and scrubs) its settings: anvil must not
        # inherit secrets such as BUNDLER_PRIVATE_KEY or BUNDLER_RELAY_MASTER_KEY
        env={k: v for k, v in os.environ.items() if not k.startswith("BUNDLER_")},
    )
    node = Anvil(proc, port, chain_id)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"anvil exited with code {proc.returncode} (port {port} in use?)")
        try:
            rpc(node.url, "eth_chainId", [], timeout=1)
            return node
        except OSError:
            time.sleep(0.05)
    node.stop()
    raise RuntimeError("anvil did not start within 30 s")


def kill_on_exit(node: Anvil) -> None:
    """Best effort for abnormal exits of the parent (tests, crashes)."""
    import atexit

    atexit.register(node.stop)
