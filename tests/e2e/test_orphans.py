"""`kill -9` of the bundler leaves nothing behind: real `bundler run` and `bundler dev`
processes are killed with SIGKILL (the parent alone, not its process group), and every
process they had started (simulation workers, the multiprocessing resource tracker, anvil)
is gone shortly after, and anvil's port is free again."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bundler.devchain import free_port
from helpers.procs import BundlerProcess, call, wait_for


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None:
                children.setdefault(st[1], []).append(int(entry))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X")  # a zombie has exited, only unreaped


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _kill_parent_and_wait(parent: subprocess.Popen, children: set[int]) -> None:
    os.kill(parent.pid, signal.SIGKILL)  # the parent only: its children must notice by themselves
    parent.wait(10)
    try:
        wait_for(lambda: not any(alive(p) for p in children), timeout=15, interval=0.1,
                 what="the children of the killed bundler to exit")
    finally:
        for pid in children:  # never leave one behind for the next test, whatever happened
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    survivors = {p: _cmdline(p) for p in children if alive(p)}
    assert not survivors, survivors


def test_kill_9_of_bundler_run_leaves_no_child(anvil, tmp_path):
    b = BundlerProcess(anvil.url, tmp_path / "data", "0x" + os.urandom(32).hex(), "--sim-workers", "2")
    try:
        children = descendants(b.proc.pid)
        kinds = [_cmdline(p) for p in children]
        # two simulation workers and the resource tracker, all spawned interpreters
        assert len(children) >= 3 and any("resource_tracker" in k for k in kinds), kinds
        _kill_parent_and_wait(b.proc, children)
    finally:
        b.stop()


def test_kill_9_of_bundler_dev_stops_anvil(tmp_path):
    node_port, port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUNDLER_")}
    log = open(tmp_path / "dev.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bundler.cli", "dev", "--node-port", str(node_port), "--port", str(port),
         "--sim-workers", "1"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    children: set[int] = set()
    try:
        url = f"http://127.0.0.1:{port}"

        def ready():
            if proc.poll() is not None:
                raise AssertionError(f"bundler dev exited: {(tmp_path / 'dev.log').read_text()[-3000:]}")
            try:
                return call(url, "eth_chainId", timeout=2)
            except (OSError, urllib.error.URLError):
                return None

        wait_for(ready, timeout=120, what="bundler dev to serve")
        # bundler dev's own defaults: any web page may call the public methods
        preflight = urllib.request.Request(url, method="OPTIONS", headers={
            "Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST"})
        with urllib.request.urlopen(preflight, timeout=10) as resp:
            assert resp.headers["Access-Control-Allow-Origin"] in ("*", "http://localhost:3000")
        # and loopback clients are not rate-limited: 300 requests at once, past the default burst of 100
        batch = json.dumps([{"jsonrpc": "2.0", "id": i, "method": "eth_chainId", "params": []} for i in range(100)])
        for _ in range(3):
            req = urllib.request.Request(url, batch.encode(), {"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as resp:
                assert resp.status == 200 and len(json.loads(resp.read())) == 100
        children = descendants(proc.pid)
        assert any("anvil" in _cmdline(p) for p in children), [_cmdline(p) for p in children]
        assert not _port_free(node_port)
        _kill_parent_and_wait(proc, children)
        wait_for(lambda: _port_free(node_port), timeout=10, what="anvil's port to be free")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in children:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        log.close()


MIDDLE = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], str(os.getpid())])
print(child.pid, flush=True)
time.sleep(120)
"""
# a Python child tied to its parent by the parent watch alone (as where prctl does not exist)
WATCHED_CHILD = """
import sys, time
import bundler.lifetime as lifetime
lifetime._LIBC = None
lifetime.die_with_parent(int(sys.argv[1]))  # the parent it was started by, even if already gone
time.sleep(120)
"""


def test_parent_watch_alone_ends_an_orphaned_worker():
    middle = subprocess.Popen([sys.executable, "-c", MIDDLE, WATCHED_CHILD], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    child = int(middle.stdout.readline())
    try:
        assert alive(child)
        _kill_parent_and_wait(middle, {child})
    finally:
        if middle.poll() is None:
            middle.kill()
            middle.wait()
