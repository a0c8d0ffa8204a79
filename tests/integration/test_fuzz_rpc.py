"""Thousands of malformed JSON-RPC requests (hypothesis) against a real bundler over HTTP:
random JSON, random methods of our tables with random params, near-valid UserOperations
with fields mutated, broken envelopes and batches, `"id": null` requests, params of up to a
megabyte, bodies sent with other Content-Types. Never a 5xx, always a well-formed JSON-RPC
answer with an integer code and a string message (415 for a body that is not
application/json, an answer with `"id": null` for such a request), and a valid op is still
accepted after."""
from __future__ import annotations

import asyncio
import json
import os

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bundler.entrypoint import V07, V08
from helpers.bundlers import funded_account, running_bundler, signed_op

pytestmark = pytest.mark.asyncio

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "1200"))  # about 3,000 requests

OUR_METHODS = [
    "eth_chainId", "eth_supportedEntryPoints", "web3_clientVersion", "eth_sendUserOperation",
    "eth_estimateUserOperationGas", "eth_getUserOperationByHash", "eth_getUserOperationReceipt",
    "debug_bundler_clearState", "debug_bundler_clearMempool", "debug_bundler_dumpMempool",
    "debug_bundler_setBundlingMode", "debug_bundler_sendBundleNow",
]
FORWARDED_READS = ["eth_blockNumber", "eth_getBalance", "eth_getCode", "eth_call", "eth_getLogs"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(2**300), max_value=2**300),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6,
)
hex_strings = st.one_of(
    st.binary(max_size=80).map(lambda b: "0x" + b.hex()),
    st.text(alphabet="0123456789abcdefABCDEFxX", max_size=80),
    st.integers(min_value=0, max_value=2**300).map(hex),
    st.just("0x"), st.just("0x0"), st.just("0x" + "f" * 65), st.just("-0x1"),
)
ep_addresses = st.sampled_from([V07.address, V08.address, V07.address.upper(), "0x" + "00" * 20, "0x1234"]) | json_values


@st.composite
def near_valid_ops(draw, base_ops):
    op = dict(draw(st.sampled_from(base_ops)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        field = draw(st.sampled_from(sorted(op) + ["initCode", "paymasterAndData", "eip7702Auth", "unknownField",
                                                     "paymaster", "factory"]))
        action = draw(st.sampled_from(["drop", "json", "hex", "hex", "huge"]))
        if action == "drop":
            op.pop(field, None)
        elif action == "json":
            op[field] = draw(json_values)
        elif action == "hex":
            op[field] = draw(hex_strings)
        else:
            op[field] = "0x" + "f" * draw(st.integers(min_value=30, max_value=70))
    return op


@st.composite
def long_params(draw, base_ops):
    """A request whose params carry one very long string (up to about the body limit)."""
    size = draw(st.sampled_from([10_000, 100_000, 500_000, 1_100_000]))
    long = draw(st.sampled_from(["0x" + "ab" * (size // 2), "x" * size]))
    method = draw(st.sampled_from(OUR_METHODS + FORWARDED_READS + ["no_suchMethod"]))
    where = draw(st.sampled_from(["param", "op field", "method"]))
    if where == "param":
        params = [long, draw(ep_addresses)]
    elif where == "op field":
        op = dict(draw(st.sampled_from(base_ops)))
        op[draw(st.sampled_from(sorted(op)))] = long
        params = [op, draw(ep_addresses)]
    else:
        method, params = method + long[:5000], []
    return {"jsonrpc": "2.0", "id": draw(st.integers(0, 10) | st.none()), "method": method, "params": params}


def requests_strategy(base_ops):
    ids = st.one_of(st.integers(), st.text(max_size=10), st.none(), st.floats(allow_nan=False), json_values)
    methods = st.sampled_from(OUR_METHODS + FORWARDED_READS) | st.text(max_size=30).filter(
        lambda m: not m.startswith("eth_"))
    params = st.one_of(
        st.none(), st.lists(json_values, max_size=4), st.dictionaries(st.text(max_size=10), json_values, max_size=3),
        st.tuples(near_valid_ops(base_ops), ep_addresses).map(list),
        st.tuples(near_valid_ops(base_ops), ep_addresses, json_values).map(list),
        st.tuples(hex_strings).map(list),
    )

    @st.composite
    def request(draw):
        body = {"jsonrpc": draw(st.sampled_from(["2.0", "2.0", "2.0", "1.0", None])), "method": draw(methods),
                "params": draw(params), "id": draw(ids)}
        # at most one member dropped (a missing id makes a notification) or replaced by junk
        for key in draw(st.lists(st.sampled_from(["jsonrpc", "method", "params", "id"]), max_size=1)):
            if draw(st.booleans()):
                body.pop(key, None)
            else:
                body[key] = draw(json_values)
        if body.get("jsonrpc") is None and draw(st.booleans()):
            body.pop("jsonrpc", None)
        return body

    # JSON-RPC 2.0: "id": null is a request to answer (with "id": null), not a notification
    null_id = st.builds(lambda m, p: {"jsonrpc": "2.0", "id": None, "method": m, "params": p}, methods, params)
    send_op = st.builds(lambda op, ep: {"jsonrpc": "2.0", "id": 1, "method": "eth_sendUserOperation",
                                        "params": [op, ep]}, near_valid_ops(base_ops), ep_addresses)
    return st.one_of(
        request(), request(), send_op, null_id, long_params(base_ops),
        st.lists(request() | send_op | json_values, min_size=0, max_size=6),  # batches
        json_values,
    )


def _bodies(base_ops):
    """A JSON-able value (sent encoded, cut short, and inside a batch) or raw garbage bytes."""
    garbage = st.binary(max_size=200) | st.text(max_size=200).map(str.encode)
    return st.one_of(requests_strategy(base_ops), requests_strategy(base_ops), garbage)


_STRATEGIES: dict[int, st.SearchStrategy] = {}


def _strategy(base_ops) -> st.SearchStrategy:
    if id(base_ops) not in _STRATEGIES:
        _STRATEGIES[id(base_ops)] = _bodies(base_ops)
    return _STRATEGIES[id(base_ops)]


def _check_response(resp) -> None:
    assert isinstance(resp, dict), resp
    assert resp.get("jsonrpc") == "2.0", resp
    assert "id" in resp, resp
    assert ("result" in resp) != ("error" in resp), resp
    if "error" in resp:
        err = resp["error"]
        assert isinstance(err, dict), resp
        assert isinstance(err.get("code"), int) and not isinstance(err.get("code"), bool), resp
        assert isinstance(err.get("message"), str), resp


@pytest_asyncio.fixture(scope="module")
async def fuzz_target(anvil):
    async with running_bundler(anvil) as (b, rpc):
        yield b, rpc


@pytest.fixture(scope="module")
def base_ops(anvil):
    accts = [funded_account(anvil, V07), funded_account(anvil, V08), funded_account(anvil, V07, deployed=False)]
    return [signed_op(anvil, a) for a in accts]


SEEN = {"requests": 0, "errors": 0, "wrong_type": 0, "null_id": 0, "long": 0}
CANARY = {"jsonrpc": "2.0", "id": "canary", "method": "eth_chainId", "params": []}


JSON_TYPES = ["application/json", "application/json; charset=utf-8", "Application/JSON"]
OTHER_TYPES = ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
               "application/jsonx", "text/json", None]


async def _post(rpc, url: str, body: bytes, content_type: str | None = "application/json"):
    headers = {} if content_type is None else {"Content-Type": content_type}
    async with rpc.session.post(url, data=body, headers=headers, skip_auto_headers=["Content-Type"]) as resp:
        return body, resp.status, await resp.text()


def _check_answer(body: bytes, status: int, text: str, content_type: str | None = "application/json"):
    SEEN["requests"] += 1
    assert status < 500, (body[:300], status, text[:300])
    if content_type not in JSON_TYPES:  # whatever the body, only JSON is read
        assert status in (413, 415), (content_type, status, text[:300])
        _check_response(json.loads(text))
        SEEN["wrong_type"] += 1
        return None
    assert status != 415, (content_type, text[:300])  # JSON, whatever the spelling, is read
    if status == 204:  # notifications only
        assert text == ""
        return None
    if status == 413:  # body too large: still a JSON-RPC error
        _check_response(json.loads(text))
        return None
    answer = json.loads(text)
    if isinstance(answer, list):
        assert answer, (body[:300], text[:300])
        for one in answer:
            _check_response(one)
    else:
        _check_response(answer)
        SEEN["errors"] += "error" in answer
    return answer


def _strict_json(value) -> bool:
    try:
        json.dumps(value, allow_nan=False)
        return True
    except ValueError:
        return False


@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
async def test_fuzzed_requests_get_well_formed_answers(fuzz_target, base_ops, data):
    """Each example is sent three ways at once: as drawn, cut short, and inside a batch next to
    a valid request (whose answer must be there)."""
    b, rpc = fuzz_target
    value = data.draw(_strategy(base_ops), label="value")
    if isinstance(value, bytes):
        bodies = [value]
    elif not _strict_json(value):  # Infinity somewhere: not JSON, a parse error as a whole
        bodies = [json.dumps(value).encode()]
    else:
        encoded = json.dumps(value).encode()
        cut = data.draw(st.integers(min_value=0, max_value=max(len(encoded) - 1, 0)), label="cut")
        bodies = [encoded, encoded[:cut], json.dumps([value, CANARY]).encode()]
    content_type = data.draw(st.sampled_from(["application/json"] * 12 + JSON_TYPES + OTHER_TYPES),
                             label="content type")
    types = [content_type] + ["application/json"] * (len(bodies) - 1)
    answers = [_check_answer(*r, t) for r, t in zip(
        await asyncio.gather(*(_post(rpc, b.url, body, t) for body, t in zip(bodies, types))), types)]
    SEEN["long"] += len(bodies[0]) > 10_000
    if (content_type in JSON_TYPES and isinstance(value, dict) and "id" in value and len(bodies) == 3
            and len(bodies[0]) <= b.config.max_body_bytes):
        # a request (with an id, null included) is answered; only a notification is not
        assert isinstance(answers[0], dict), (bodies[0][:300], answers[0])
        if value["id"] is None:
            assert answers[0]["id"] is None, answers[0]
            SEEN["null_id"] += 1
    if len(answers) == 3 and len(bodies[2]) <= b.config.max_body_bytes:
        canary = [a for a in answers[2] if a.get("id") == "canary"]
        assert canary and canary[0].get("result") == hex(b.chain_id), (bodies[2][:300], answers[2])


async def test_after_fuzzing_the_server_still_takes_a_valid_op(anvil, fuzz_target):
    b, rpc = fuzz_target
    assert SEEN["requests"] >= 2 * EXAMPLES, SEEN  # the fuzz test above sent its requests
    assert SEEN["errors"] > EXAMPLES // 2, SEEN
    # the new kinds of input were really sent
    assert SEEN["wrong_type"] > EXAMPLES // 20 and SEEN["null_id"] > EXAMPLES // 50, SEEN
    assert SEEN["long"] > EXAMPLES // 50, SEEN
    acct = funded_account(anvil, V07)
    assert (await rpc.call("eth_sendUserOperation", signed_op(anvil, acct), V07.address)).startswith("0x")
    assert await rpc.call("eth_chainId") == hex(anvil.chain_id)
