"""The JSON-RPC handlers, one registry per namespace, each on its typed services: served over
HTTP by the real aiohttp/pjrpc app (rpc.server.build_app) with fakes behind the services, no
node. What a caller sees: answers, and the same error codes and messages."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from eth_utils import to_checksum_address

from bundler import CLIENT_VERSION
from bundler.chain.types import PinnedBlock
from bundler.chain.userop_logs import OpReceipt
from bundler.entrypoint import V07, V08
from bundler.errors import ValidationRejected
from bundler.pool.mempool import PoolEntry
from bundler.pool.pool import ReputationRow
from bundler.pool.reputation import Status
from bundler.rpc.handlers.debug import DebugServices, debug_registry
from bundler.rpc.handlers.eth import EthServices, eth_registry
from bundler.rpc.handlers.paymaster import PaymasterServices, paymaster_registry
from bundler.rpc.handlers.session import SessionServices, session_registry
from bundler.rpc.server import build_app
from bundler.userop.codec import format_user_operation
from helpers.stores import make_op

OP = make_op(1)
HASH = "0x" + "ab" * 32


class RpcError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


@pytest.fixture
async def serve():
    """serve(registry) -> call(method, *params): a real HTTP server on a free port."""
    servers: list[TestServer] = []
    session = aiohttp.ClientSession()

    async def start(registry):
        server = TestServer(build_app(registry), host="127.0.0.1", port=0)
        await server.start_server()
        servers.append(server)
        url = str(server.make_url("/"))

        async def call(method: str, *params: Any, by_name: dict | None = None) -> Any:
            body = {"jsonrpc": "2.0", "id": 1, "method": method,
                    "params": by_name if by_name is not None else list(params)}
            async with session.post(url, json=body) as resp:
                answer = await resp.json()
            if "error" in answer:
                raise RpcError(answer["error"]["code"], answer["error"]["message"])
            return answer["result"]
        return call

    yield start
    await session.close()
    for s in servers:
        await s.close()


class FakeAdmission:
    def __init__(self, refuse: Exception | None = None):
        self.added: list[tuple[Any, Any]] = []
        self.refuse = refuse

    async def add(self, op, entry_point) -> str:
        if self.refuse is not None:
            raise self.refuse
        self.added.append((op, entry_point))
        return HASH


class FakeMetrics:
    def __init__(self):
        self.submissions: list[Any] = []

    @contextmanager
    def submission(self, entry_point):
        self.submissions.append(entry_point)
        yield


class FakeLookup:
    def __init__(self):
        self.asked: list[str] = []

    async def by_hash(self, op_hash):
        self.asked.append(op_hash)
        return None

    async def receipt(self, op_hash):
        self.asked.append(op_hash)
        return OpReceipt(op_hash=op_hash, entry_point=V07.address, sender=OP.sender, nonce=OP.nonce,
                         paymaster="0x" + "00" * 20, actual_gas_cost=21, actual_gas_used=7, success=True, reason=b"",
                         logs=[], receipt={"status": "0x1"})


def eth(pool=None, lookup=None, metrics=None) -> EthServices:
    return EthServices(chain_id=31337, entry_points=[V07], pool=pool or FakeAdmission(), estimator=None,  # type: ignore[arg-type]
                       lookup=lookup or FakeLookup(), metrics=metrics or FakeMetrics())


async def test_eth_send_user_operation_goes_to_the_pool_and_is_counted(serve):
    pool, metrics = FakeAdmission(), FakeMetrics()
    call = await serve(eth_registry(eth(pool=pool, metrics=metrics)))
    assert await call("eth_sendUserOperation", format_user_operation(OP), V07.address) == HASH
    # by name, as JSON-RPC allows: the params keep their names
    assert await call("eth_sendUserOperation",
                      by_name={"user_op": format_user_operation(OP), "entry_point": V07.address}) == HASH
    assert pool.added == [(OP, V07), (OP, V07)] and metrics.submissions == [V07.address] * 2
    assert await call("eth_chainId") == "0x7a69"
    assert await call("eth_supportedEntryPoints") == [to_checksum_address(V07.address)]
    assert await call("web3_clientVersion") == CLIENT_VERSION


async def test_eth_errors_keep_their_codes_and_messages(serve):
    call = await serve(eth_registry(eth(pool=FakeAdmission(refuse=ValidationRejected("AA23 reverted")))))
    with pytest.raises(RpcError) as refused:
        await call("eth_sendUserOperation", format_user_operation(OP), V07.address)
    assert (refused.value.code, refused.value.message) == (-32500, "AA23 reverted")
    with pytest.raises(RpcError) as unsupported:
        await call("eth_sendUserOperation", format_user_operation(OP), V08.address)
    assert unsupported.value.code == -32602
    assert unsupported.value.message == (f"unsupported entryPoint {V08.address!r}; this bundler serves "
                                         f"{to_checksum_address(V07.address)}")
    with pytest.raises(RpcError) as bad_hash:
        await call("eth_getUserOperationByHash", "0x12")
    assert (bad_hash.value.code, bad_hash.value.message) == (-32602, "Missing/invalid userOpHash")


async def test_eth_lookups_take_the_hash_lower_cased(serve):
    lookup = FakeLookup()
    call = await serve(eth_registry(eth(lookup=lookup)))
    assert await call("eth_getUserOperationByHash", HASH.upper().replace("0X", "0x")) is None
    receipt = await call("eth_getUserOperationReceipt", HASH)
    assert (receipt["userOpHash"], receipt["nonce"], receipt["actualGasCost"], receipt["success"]) == (
        HASH, hex(OP.nonce), "0x15", True)
    assert lookup.asked == [HASH, HASH]


class FakePool:
    """The Pool's debug operations, recorded."""

    def __init__(self):
        self.calls: list[tuple] = []
        self.entries = [PoolEntry(op=OP, entry_point=V07, hash=HASH)]
        self.stake_policy = SimpleNamespace(min_stake=1, min_unstake_delay=1)

    def dump(self, entry_point=None):
        self.calls.append(("dump", entry_point))
        return self.entries

    def clear(self):
        self.calls.append(("clear",))

    def clear_state(self):
        self.calls.append(("clear_state",))

    def clear_reputation(self):
        self.calls.append(("clear_reputation",))

    def set_reputation(self, ep, address, seen, included):
        self.calls.append(("set_reputation", ep, address, seen, included))

    def dump_reputation(self, ep):
        return [ReputationRow("0x" + "aa" * 20, 10, 1, Status.THROTTLED)]


@dataclass
class FakeBundling:
    mode: str = "auto"
    notified: int = 0
    sent: tuple = ()

    def notify_new_op(self) -> None:
        self.notified += 1

    async def bundle_all(self):
        return [SimpleNamespace(tx_hash=h) for h in self.sent]


async def test_debug_methods_drive_the_pool_and_the_bundling(serve):
    pool, bundling = FakePool(), FakeBundling()
    call = await serve(debug_registry(DebugServices(entry_points=[V07], pool=pool, bundling=bundling,  # type: ignore[arg-type]
                                                    node=None)))  # type: ignore[arg-type]
    assert await call("debug_bundler_dumpMempool", V07.address) == [format_user_operation(OP)]
    assert await call("debug_bundler_clearMempool") == "ok"
    assert await call("debug_bundler_clearState") == "ok"
    assert await call("debug_bundler_clearReputation") == "ok"
    address = "0x" + "Bb" * 20
    assert await call("debug_bundler_setReputation", [{"address": address, "opsSeen": "0x5", "opsIncluded": 2}],
                      V07.address) == "ok"
    assert pool.calls == [("dump", V07), ("clear",), ("clear_state",), ("clear_reputation",),
                          ("set_reputation", V07, address.lower(), 5, 2)]
    assert await call("debug_bundler_dumpReputation", V07.address) == [
        {"address": to_checksum_address("0x" + "aa" * 20), "opsSeen": "0xa", "opsIncluded": "0x1", "status": "0x1"}]
    assert await call("debug_bundler_setBundlingMode", "manual") == "ok" and bundling.mode == "manual"
    assert bundling.notified == 0
    assert await call("debug_bundler_setBundlingMode", "auto") == "ok" and bundling.notified == 1
    with pytest.raises(RpcError) as bad_mode:
        await call("debug_bundler_setBundlingMode", "sometimes")
    assert (bad_mode.value.code, bad_mode.value.message) == (-32602, "bundling mode must be 'auto' or 'manual'")
    assert await call("debug_bundler_sendBundleNow") == "ok"  # nothing to bundle
    bundling.sent = ("0x01",)
    assert await call("debug_bundler_sendBundleNow") == "0x01"
    bundling.sent = ("0x01", "0x02")
    assert await call("debug_bundler_sendBundleNow") == ["0x01", "0x02"]
    with pytest.raises(RpcError) as bad_entries:
        await call("debug_bundler_setReputation", {"address": address}, V07.address)
    assert bad_entries.value.code == -32602 and "expected an array" in bad_entries.value.message


class FakeSessions:
    contracts = ("SessionAccount",)

    async def session_info(self, account, signer, ep=None):
        from bundler.sessions.views import SessionReport
        return SessionReport(account=account, session_key=signer, entry_point=ep.address if ep else None,
                             account_type="counterfactual", block_number=1, now=2, status="unknown", grant_nonce=0,
                             spec=None, uses_used=0, uses_pending=0, uses_remaining=None, current_period=None,
                             limits=[], pending_ops=[])

    async def activity(self, account, signer):
        from bundler.sessions.views import ActivityItem
        from bundler.store.records import SessionActivity
        return [ActivityItem(SessionActivity(op_hash="0x" + "01" * 32, account=account, session_key=signer,
                                             entry_point=V07.address, nonce=1, mode="session", period_index=0,
                                             calls=[], consumed=[], received_at=3.0), None)]


async def test_session_methods_parse_addresses_and_refuse_without_session_accounts(serve):
    account, key = "0x" + "Ac" * 20, "0x" + "5e" * 20
    call = await serve(session_registry(SessionServices(entry_points=[V07], sessions=FakeSessions())))
    info = await call("session_getSession", account, key, V07.address)
    assert (info["account"], info["sessionKey"], info["entryPoint"]) == (
        to_checksum_address(account), to_checksum_address(key), to_checksum_address(V07.address))
    assert [a["userOpHash"] for a in await call("session_getActivity", account, key)] == ["0x" + "01" * 32]
    with pytest.raises(RpcError) as bad:
        await call("session_getSession", "0x12", key)
    assert bad.value.code == -32602 and "account" in bad.value.message
    none = await serve(session_registry(SessionServices(entry_points=[V07], sessions=None)))
    with pytest.raises(RpcError) as unknown:
        await none("session_getActivity", account, key)
    assert (unknown.value.code, unknown.value.message) == (
        -32602, "this bundler recognises no SessionAccount implementation on this chain (see --session-implementations)")


class FakeHead:
    def __init__(self):
        self.latest: PinnedBlock | None = PinnedBlock(number=5, timestamp=1_234, base_fee=1, gas_limit=30_000_000)

    async def fresh(self) -> PinnedBlock:
        raise AssertionError("the latest header is known: no node read")


class FakeSponsor:
    async def stub_data(self, op, ep, chain_id, context):
        return {"stub": chain_id, "entryPoint": ep.address, "sender": op.sender, "context": context}

    async def paymaster_data(self, op, ep, chain_id, context):
        return {"signed": chain_id}

    def budget_status(self, policy_id, sender, now):
        return {"policyId": policy_id, "sender": sender, "now": now}


async def test_paymaster_methods_on_their_services(serve):
    unsigned = format_user_operation(make_op(1, signature=b""))
    call = await serve(paymaster_registry(PaymasterServices(entry_points=[V07], sponsor=FakeSponsor(),
                                                            head=FakeHead())))
    assert await call("pm_getPaymasterStubData", unsigned, V07.address, "0x7a69", {"policy": "p"}) == {
        "stub": 31337, "entryPoint": V07.address, "sender": OP.sender, "context": {"policy": "p"}}
    assert await call("pm_getPaymasterData", unsigned, V07.address, "0x7a69") == {"signed": 31337}
    assert await call("pm_getSponsorshipStatus", "p") == {"policyId": "p", "sender": None, "now": 1_234}
    with pytest.raises(RpcError) as bad:
        await call("pm_getSponsorshipStatus", 7)
    assert (bad.value.code, bad.value.message) == (-32602, "invalid policyId: expected a string")
    off = await serve(paymaster_registry(PaymasterServices(entry_points=[V07], sponsor=None, head=FakeHead())))
    with pytest.raises(RpcError) as none:
        await off("pm_getPaymasterData", unsigned, V07.address, "0x7a69")
    assert none.value.code == -32602 and none.value.message.startswith("this bundler sponsors no gas")
