"""rpc.server's direct call (the usual request without pjrpc's dispatch chain) answers byte for
byte what pjrpc answers: each request below is sent to the app as built and to the same app
with the direct call switched off, and the HTTP status and body must be equal."""
from __future__ import annotations

import json

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from pjrpc.server import MethodRegistry

from bundler.errors import InvalidParams, ValidationRejected
from bundler.rpc import server as rpc_server
from bundler.rpc.server import build_app


def _registry() -> MethodRegistry:
    r = MethodRegistry()

    @r.add(name="t_echo")
    async def echo(a: object, b: object = None) -> dict:
        return {"a": a, "b": b, "big": 2**70}  # beyond 64 bits: the json.dumps fallback

    @r.add(name="t_refuse")
    async def refuse(kind: object) -> str:
        if kind == "params":
            raise InvalidParams("bad field", {"field": "x"})
        if kind == "bug":
            raise KeyError("oops")
        raise ValidationRejected("no", {"reason": "policy"})

    @r.add(name="debug_t_private")
    async def private() -> str:
        return "secret"

    return r


REQUESTS = [
    {"jsonrpc": "2.0", "id": 1, "method": "t_echo", "params": [1, "x"]},
    {"jsonrpc": "2.0", "id": "abc", "method": "t_echo", "params": [[1, 2]]},
    {"jsonrpc": "2.0", "id": 7, "method": "t_echo", "params": []},  # too few: pjrpc's error
    {"jsonrpc": "2.0", "id": 7, "method": "t_echo", "params": [1, 2, 3]},  # too many
    {"jsonrpc": "2.0", "id": 7, "method": "t_echo", "params": {"a": 5}},  # by name
    {"jsonrpc": "2.0", "id": True, "method": "t_echo", "params": [1]},
    {"jsonrpc": "2.0", "id": None, "method": "t_echo", "params": [1]},  # null id: answered
    {"jsonrpc": "2.0", "method": "t_echo", "params": [1]},  # notification: 204
    {"jsonrpc": "1.0", "id": 1, "method": "t_echo", "params": [1]},
    {"id": 1, "method": "t_echo", "params": [1]},
    {"jsonrpc": "2.0", "id": 1, "method": 5, "params": [1]},
    {"jsonrpc": "2.0", "id": 1, "method": "t_missing", "params": []},
    {"jsonrpc": "2.0", "id": 2, "method": "t_refuse", "params": ["params"]},
    {"jsonrpc": "2.0", "id": 3, "method": "t_refuse", "params": ["policy"]},
    {"jsonrpc": "2.0", "id": 4, "method": "t_refuse", "params": ["bug"]},
    {"jsonrpc": "2.0", "id": 5, "method": "debug_t_private", "params": []},
]


async def _answers(session: aiohttp.ClientSession, url: str, bodies: list, headers: dict) -> list:
    out = []
    for body in bodies:
        async with session.post(url, data=json.dumps(body), headers={"Content-Type": "application/json",
                                                                       **headers}) as resp:
            out.append((resp.status, await resp.read()))
    return out


@pytest.mark.parametrize("origin", [False, True])
async def test_direct_call_answers_as_pjrpc(monkeypatch, origin):
    bodies = [*REQUESTS, REQUESTS[:4], [REQUESTS[12], REQUESTS[7], REQUESTS[0]]]  # and batches
    headers = {"Origin": "https://example.org"} if origin else {}
    answers = {}
    calls = []
    real = rpc_server._DirectCall.__call__

    async def counting(self, member, context):
        answer = await real(self, member, context)
        calls.append(answer is not None)
        return answer

    for direct in (True, False):
        if direct:
            monkeypatch.setattr(rpc_server._DirectCall, "__call__", counting)
        else:
            async def off(self, member, context):
                return None
            monkeypatch.setattr(rpc_server._DirectCall, "__call__", off)
        server = TestServer(build_app(_registry()), host="127.0.0.1", port=0)
        await server.start_server()
        try:
            async with aiohttp.ClientSession() as session:
                answers[direct] = await _answers(session, str(server.make_url("/")), bodies, headers)
        finally:
            await server.close()
    assert answers[True] == answers[False]
    assert any(calls), "the direct call answered nothing: the test compares pjrpc with itself"
    assert answers[True][0][1] == b'{"jsonrpc": "2.0", "id": 1, "result": {"a": 1, "b": "x", "big": 1180591620717411303424}}'
    assert json.loads(answers[True][13][1])["error"]["code"] == ValidationRejected.code
