"""`bundler dev` as a child process on ports the OS picks, with the addresses it prints, for tests
that drive it the way a developer would (the examples, the SDKs)."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
READY_LINE = "Ctrl-C stops"


def python_path(*parts: str) -> str:
    """PYTHONPATH with this checkout's sources first (the shared venv's editable installs may
    point at another checkout)."""
    paths = [str(REPO / p) for p in parts]
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    return os.pathsep.join(paths)


@dataclass
class DevBundler:
    bundler_url: str
    node_url: str
    chain_id: int
    token: str
    entry_points: dict[str, dict[str, str]]
    proc: subprocess.Popen
    output: list[str] = field(default_factory=list)
    paymasters: dict[str, str] = field(default_factory=dict)  # EntryPoint version -> SponsorPaymaster

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def start_dev_bundler(*args: str, timeout: float = 180.0) -> DevBundler:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUNDLER_")}
    env["PYTHONPATH"] = python_path("src", "sdk/python")
    proc = subprocess.Popen([sys.executable, "-m", "bundler.cli", "dev", "--port", "0", "--node-port", "0",
                             "--log-level", "warning", *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:  # keeps draining the pipe after start so the child never blocks on it
        for line in proc.stdout:
            lines.append(line)
            if READY_LINE in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not ready.wait(0.2):
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            raise RuntimeError("bundler dev did not start:\n" + "".join(lines))
    text = "".join(lines)

    def grab(pattern: str) -> str:
        m = re.search(pattern, text)
        if not m:
            raise RuntimeError(f"no {pattern!r} in:\n{text}")
        return m.group(1)

    eps: dict[str, dict[str, str]] = {}
    current = None
    for line in text.splitlines():
        m = re.search(r"EntryPoint v(\d\.\d)\s+(0x[0-9a-fA-F]{40})", line)
        if m:
            current = eps[m.group(1)] = {"entryPoint": m.group(2)}
            continue
        m = re.match(r"\s+(SimpleAccountFactory|SessionAccount|SessionAccountFactory)\s+(0x[0-9a-fA-F]{40})", line)
        if m and current is not None:
            current[m.group(1)] = m.group(2)
    paymasters = dict(re.findall(r"SponsorPaymaster v(\d\.\d)\s+(0x[0-9a-fA-F]{40})", text))
    return DevBundler(grab(r"bundler URL\s+(http://\S+)"), grab(r"node URL\s+(http://\S+)"),
                      int(grab(r"chain id (\d+)")), grab(r"TestERC20\s+(0x[0-9a-fA-F]{40})"), eps, proc, lines,
                      paymasters)
