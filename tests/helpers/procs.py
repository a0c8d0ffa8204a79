"""`bundler run` as a real child process (for kill -9 / restart tests), and a synchronous
JSON-RPC caller that keeps error codes."""
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

from bundler.devchain import free_port


class RpcFailure(Exception):
    def __init__(self, method: str, error: dict):
        super().__init__(f"{method}: {error.get('code')}: {error.get('message')}")
        self.code = error.get("code")
        self.message = error.get("message") or ""
        self.data = error.get("data")


def call(url: str, method: str, *params, timeout: float = 30.0):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        answer = json.loads(resp.read())
    if "error" in answer:
        raise RpcFailure(method, answer["error"])
    return answer["result"]


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(interval)


class BundlerProcess:
    """`python -m bundler.cli run ...` on a free port; the key goes through BUNDLER_PRIVATE_KEY."""

    def __init__(self, rpc_url: str, data_dir: str | os.PathLike, key: str, *args: str,
                 env: dict[str, str] | None = None, log_path: str | os.PathLike | None = None,
                 exempt_loopback: bool = True):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(log_path or Path(data_dir).parent / f"bundler-{self.port}.log")
        cmd = [sys.executable, "-m", "bundler.cli", "run", "--rpc-url", rpc_url, "--port", str(self.port),
               "--data-dir", str(data_dir), "--debug-api", "--bundle-mode", "manual", "--sim-workers", "1",
               "--log-level", "info", *(["--rate-limit-exempt-loopback"] if exempt_loopback else []), *args]
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("BUNDLER_")}
        full_env.update({"BUNDLER_PRIVATE_KEY": key, **(env or {})})
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, env=full_env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bundler exited with {self.proc.returncode}:\n{self.log()}")
            try:
                call(self.url, "eth_chainId", timeout=2)
                return
            except (OSError, urllib.error.URLError):
                time.sleep(0.1)
        raise RuntimeError(f"bundler did not start within {timeout} s:\n{self.log()}")

    def call(self, method: str, *params, timeout: float = 30.0):
        return call(self.url, method, *params, timeout=timeout)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-20000:]

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, nothing is flushed."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._log.close()

    def wait_dead(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout)
        self._log.close()
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        if not self._log.closed:
            self._log.close()
