"""The debug_bundler_* namespace through the real RPC: off unless --debug-api, mempool dumps in
the RPC form the client sent, state / reputation clearing, setReputation input, and
getStakeStatus read from the EntryPoint (stake via EntryPoint.addStake)."""
from __future__ import annotations

import aiohttp
import pytest
from eth_utils import to_checksum_address

from bundler import config as cfg
from bundler.cli import build_parser
from bundler.devchain.anvil import rpc as node_rpc
from bundler.entrypoint import V07, V08, V09
from bundler.userop import format_user_operation
from conftest import RpcClient, RpcError, bundler_config
from helpers.accounts import SimpleAccountHelper, mine, selector, send_tx
from helpers.entities import add_stake, make_account, make_paymaster, paymaster_op

EPS = [pytest.param(V07, id="v0.7"), pytest.param(V08, id="v0.8"), pytest.param(V09, id="v0.9")]
DEBUG_METHODS = [
    ("debug_bundler_clearState", []), ("debug_bundler_clearMempool", []), ("debug_bundler_dumpMempool", None),
    ("debug_bundler_setBundlingMode", ["manual"]), ("debug_bundler_sendBundleNow", []),
    ("debug_bundler_clearReputation", []), ("debug_bundler_setReputation", None),
    ("debug_bundler_dumpReputation", None), ("debug_bundler_getStakeStatus", None),
]


async def test_debug_namespace_is_off_without_the_flag(anvil):
    from bundler.app import Bundler

    b = Bundler(bundler_config(anvil, debug_api=False, sim_workers=0))
    await b.start()
    try:
        async with aiohttp.ClientSession() as session:
            client = RpcClient(b.url, session)
            for method, _ in DEBUG_METHODS:
                answer = await client.request(method)
                assert answer["error"]["code"] == -32601, method
            assert await client.call("eth_chainId") == hex(anvil.chain_id)
    finally:
        await b.stop()


def test_flag_and_dev_default():
    parser = build_parser()
    assert cfg.load(parser.parse_args(["run"]), environ={}).debug_api is False
    assert cfg.load(parser.parse_args(["run", "--debug-api"]), environ={}).debug_api is True
    assert cfg.load(parser.parse_args(["run"]), environ={"BUNDLER_DEBUG_API": "1"}).debug_api is True
    # `bundler dev` turns it on unless told --no-debug-api (cli.cmd_dev)
    assert parser.parse_args(["dev"]).debug_api is None
    assert parser.parse_args(["dev", "--no-debug-api"]).debug_api is False


async def test_every_debug_method_is_served(rpc, clean_bundler):
    names = {m for m, _ in DEBUG_METHODS}
    for method in names:
        answer = await rpc.request(method)
        assert answer.get("error", {}).get("code") != -32601, method


@pytest.mark.parametrize("ep", EPS)
async def test_dump_mempool_returns_ops_as_submitted(rpc, anvil, clean_bundler, ep):
    account = make_account(anvil.url, ep)
    paymaster = make_paymaster(anvil.url, ep)
    sent = []
    op = paymaster_op(anvil.url, ep, account, paymaster, paymaster_data=b"\x00\xab\xcd")
    sent.append(format_user_operation(op))
    factory = anvil.deployment.factories[ep.version]
    acct = SimpleAccountHelper.counterfactual(anvil.url, ep, factory)
    node_rpc(anvil.url, "anvil_setBalance", [acct.address, hex(10**18)])
    mine(anvil.url)
    deploying = acct.sign(acct.op(acct.execute(account, 5)), anvil.chain_id)
    # what a client sends: checksummed addresses, minimal hex quantities, lower-case data
    sent.append({
        "sender": to_checksum_address(deploying.sender), "nonce": hex(deploying.nonce),
        "factory": to_checksum_address(deploying.factory), "factoryData": "0x" + deploying.factory_data.hex(),
        "callData": "0x" + deploying.call_data.hex(), "callGasLimit": hex(deploying.call_gas_limit),
        "verificationGasLimit": hex(deploying.verification_gas_limit),
        "preVerificationGas": hex(deploying.pre_verification_gas), "maxFeePerGas": hex(deploying.max_fee_per_gas),
        "maxPriorityFeePerGas": hex(deploying.max_priority_fee_per_gas),
        "signature": "0x" + deploying.signature.hex(),
    })
    for body in sent:
        await rpc.call("eth_sendUserOperation", body, ep.address)
    dumped = await rpc.call("debug_bundler_dumpMempool", ep.address)
    assert sorted(dumped, key=lambda o: o["sender"]) == sorted(sent, key=lambda o: o["sender"])
    other = V08 if ep is V07 else V07
    assert await rpc.call("debug_bundler_dumpMempool", other.address) == []
    await rpc.call("debug_bundler_clearMempool")
    assert await rpc.call("debug_bundler_dumpMempool", ep.address) == []


async def test_clear_state_clears_mempool_and_reputation(rpc, anvil, clean_bundler):
    ep = V07
    account = make_account(anvil.url, ep)
    paymaster = make_paymaster(anvil.url, ep)
    await rpc.call("eth_sendUserOperation", format_user_operation(paymaster_op(anvil.url, ep, account, paymaster)),
                   ep.address)
    assert len(await rpc.call("debug_bundler_dumpReputation", ep.address)) == 1
    await rpc.call("debug_bundler_setReputation", [{"address": account, "opsSeen": 3, "opsIncluded": 1}], ep.address)
    assert await rpc.call("debug_bundler_clearState") == "ok"
    assert await rpc.call("debug_bundler_dumpMempool", ep.address) == []
    assert await rpc.call("debug_bundler_dumpReputation", ep.address) == []

    await rpc.call("debug_bundler_setReputation", [{"address": account, "opsSeen": 3, "opsIncluded": 1}], ep.address)
    assert await rpc.call("debug_bundler_clearReputation") == "ok"
    assert await rpc.call("debug_bundler_dumpReputation", ep.address) == []


async def test_set_and_dump_reputation_shapes(rpc, clean_bundler):
    a, b = "0x" + "12" * 20, "0x" + "34" * 20
    # numbers and hex quantities are both accepted
    assert await rpc.call("debug_bundler_setReputation", [
        {"address": a, "opsSeen": 3, "opsIncluded": "0x2"},
        {"address": b, "opsSeen": "0x3e8", "opsIncluded": 0},
    ], V08.address) == "ok"
    dump = await rpc.call("debug_bundler_dumpReputation", V08.address)
    assert dump == [
        {"address": to_checksum_address(a), "opsSeen": "0x3", "opsIncluded": "0x2", "status": "0x0"},
        {"address": to_checksum_address(b), "opsSeen": "0x3e8", "opsIncluded": "0x0", "status": "0x2"},
    ]
    assert await rpc.call("debug_bundler_dumpReputation", V07.address) == []
    for bad in ([{"address": "0x12", "opsSeen": 1, "opsIncluded": 1}], [{"address": a, "opsSeen": "x"}], "nope", [5]):
        with pytest.raises(RpcError) as e:
            await rpc.call("debug_bundler_setReputation", bad, V08.address)
        assert e.value.code == -32602
    with pytest.raises(RpcError) as e:
        await rpc.call("debug_bundler_dumpReputation", "0x" + "00" * 20)
    assert e.value.code == -32602 and "entryPoint" in e.value.message


@pytest.mark.parametrize("ep", EPS)
async def test_stake_status(rpc, anvil, clean_bundler, ep):
    paymaster = make_paymaster(anvil.url, ep)
    assert await rpc.call("debug_bundler_getStakeStatus", paymaster, ep.address) == {
        "stakeInfo": {"addr": to_checksum_address(paymaster), "stake": "0", "unstakeDelaySec": "0"},
        "isStaked": False,
    }
    add_stake(anvil.url, ep, paymaster, stake=10**18, delay=86_400)
    assert await rpc.call("debug_bundler_getStakeStatus", to_checksum_address(paymaster), ep.address) == {
        "stakeInfo": {"addr": to_checksum_address(paymaster), "stake": "1000000000000000000",
                      "unstakeDelaySec": "86400"},
        "isStaked": True,
    }
    # the other EntryPoint keeps its own stakes
    other = V08 if ep is V07 else V07
    assert (await rpc.call("debug_bundler_getStakeStatus", paymaster, other.address))["isStaked"] is False
    # unlocking: the stake stays until withdrawn, but the entity is not staked any more
    send_tx(anvil.url, paymaster, ep.address, selector("unlockStake()"), impersonate=True)
    status = await rpc.call("debug_bundler_getStakeStatus", paymaster, ep.address)
    assert status["stakeInfo"]["stake"] == "1000000000000000000" and status["isStaked"] is False

    # below the configured minimums
    low = make_paymaster(anvil.url, ep)
    add_stake(anvil.url, ep, low, stake=10**17, delay=86_400)
    short = make_paymaster(anvil.url, ep)
    add_stake(anvil.url, ep, short, stake=10**18, delay=60)
    for address in (low, short):
        assert (await rpc.call("debug_bundler_getStakeStatus", address, ep.address))["isStaked"] is False

    with pytest.raises(RpcError) as e:
        await rpc.call("debug_bundler_getStakeStatus", "0x1234", ep.address)
    assert e.value.code == -32602


async def test_send_bundle_now_with_nothing_to_send(rpc, clean_bundler):
    assert await rpc.call("debug_bundler_sendBundleNow") == "ok"
    with pytest.raises(RpcError) as e:
        await rpc.call("debug_bundler_setBundlingMode", "sometimes")
    assert e.value.code == -32602
