"""`bundler dev` as a real child process with the relay on, and a signed HTTP client for it
(a backend credential or an account owner), recording every answer it got (the key-leak tests
search them)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.fernet import Fernet

from bundler.devchain import free_port
from bundler.relay import auth

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Answer:
    status: int
    body: object
    text: str


class DevBundler:
    """`python -m bundler.cli dev` on free ports, its data dir and master key known to the test."""

    def __init__(self, tmp: Path, *args: str):
        self.port, self.node_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.node_url = f"http://127.0.0.1:{self.node_port}"
        self.data_dir = tmp / "data"
        self.master_key = Fernet.generate_key().decode()
        self.log_path = tmp / "bundler-dev.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("BUNDLER_")}
        env["BUNDLER_RELAY_MASTER_KEY"] = self.master_key
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), str(REPO / "sdk" / "python"),
                                                          env.get("PYTHONPATH")) if p)
        cmd = [sys.executable, "-m", "bundler.cli", "dev", "--port", str(self.port), "--node-port",
               str(self.node_port), "--data-dir", str(self.data_dir), "--sim-workers", "1", "--log-level", "debug",
               *args]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bundler dev exited with {self.proc.returncode}:\n{self.log()}")
            if "Ctrl-C stops" in self.log():
                return
            time.sleep(0.2)
        raise RuntimeError(f"bundler dev did not start within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # anvil is stopped by the CLI itself
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()


@dataclass
class RelayClient:
    """Signs as a credential (credential_id set), as an account's owner (owner_account set), or
    for registration (neither)."""

    url: str
    key: bytes
    credential_id: str | None = None
    owner_account: str | None = None
    seen: list[str] = field(default_factory=list)  # every answer body (for the leak checks)

    @property
    def address(self) -> str:
        from bundler.relay.keystore import address_of

        return address_of(self.key)

    def headers(self, method: str, path: str, body: bytes, **kw) -> dict[str, str]:
        h = {"Content-Type": "application/json", **auth.sign_request(self.key, method, path, body, **kw)}
        if self.credential_id:
            h[auth.HEADER_CREDENTIAL] = self.credential_id
        if self.owner_account:
            h[auth.HEADER_OWNER] = self.owner_account
        return h

    def raw(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Answer:
        req = urllib.request.Request(self.url + path, body if method != "GET" else None, headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                status, text = resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read().decode()
        self.seen.append(text)
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = None
        return Answer(status, parsed, text)

    def request(self, method: str, path: str, payload=None, **sign_kw) -> Answer:
        body = b"" if payload is None else json.dumps(payload).encode()
        return self.raw(method, path, body, self.headers(method, path, body, **sign_kw))

    def get(self, path: str) -> Answer:
        return self.request("GET", path)

    def post(self, path: str, payload=None) -> Answer:
        return self.request("POST", path, payload if payload is not None else {})

    def ok(self, answer: Answer, *statuses: int) -> dict:
        assert answer.status in (statuses or (200, 201, 202)), f"HTTP {answer.status}: {answer.text}"
        return answer.body


def register(url: str, name: str, webhook_url: str | None = None) -> RelayClient:
    client = RelayClient(url, os.urandom(32))
    body = {"address": client.address, "name": name, **({"webhookUrl": webhook_url} if webhook_url else {})}
    cred = client.ok(client.post("/relay/v1/credentials", body), 201)
    client.credential_id = cred["credentialId"]
    return client


def wait_call(client: RelayClient, call_id: str, statuses: tuple[str, ...] = ("mined", "dropped"),
              timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        view = client.ok(client.get(f"/relay/v1/calls/{call_id}"), 200)
        if view["status"] in statuses:
            return view
        if time.monotonic() > deadline:
            raise AssertionError(f"call {call_id} still {view['status']} after {timeout} s: {view}")
        time.sleep(0.1)


def wait_grant(client: RelayClient, grant_id: str, status: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        view = client.ok(client.get(f"/relay/v1/grants/{grant_id}"), 200)
        if view["status"] == status:
            return view
        if time.monotonic() > deadline:
            raise AssertionError(f"grant {grant_id} still {view['status']} after {timeout} s, wanted {status}")
        time.sleep(0.1)
