"""UserOperations through the real RPC of a bundler on anvil, from eth_sendUserOperation to a
mined handleOps, for EntryPoint v0.7 and v0.8, and every refusal a client can trigger."""
from __future__ import annotations

import os

import pytest
from eth_abi import encode
from eth_hash.auto import keccak

from bundler.contracts_build import load_contract
from bundler.devchain.anvil import ANVIL_ACCOUNT0, rpc as node_rpc
from bundler.entrypoint import V07, V08, V09
from bundler.userop import format_user_operation, decode_user_operation
from conftest import RpcError
from helpers.accounts import SimpleAccountHelper, mine, send_handle_ops, send_tx

pytestmark = pytest.mark.asyncio
EPS = [pytest.param(V07, id="v0.7"), pytest.param(V08, id="v0.8")]
# the whole flow (deploy, estimate, send, look up, mine) also for v0.9
ALL_EPS = EPS + [pytest.param(V09, id="v0.9")]


def new_account(anvil, ep, deployed=True, funded=10**18) -> SimpleAccountHelper:
    factory = anvil.deployment.factories[ep.version]
    acct = (SimpleAccountHelper.create if deployed else SimpleAccountHelper.counterfactual)(anvil.url, ep, factory)
    if funded:
        node_rpc(anvil.url, "anvil_setBalance", [acct.address, hex(funded)])
    mine(anvil.url)
    return acct


def balance(anvil, address) -> int:
    return int(node_rpc(anvil.url, "eth_getBalance", [address, "latest"]), 16)


def deploy(anvil, name: str, *args_types_values) -> str:
    art = load_contract(name)
    types = [t for t, _ in args_types_values]
    values = [v for _, v in args_types_values]
    receipt = send_tx(anvil.url, ANVIL_ACCOUNT0, None, bytes.fromhex(art["bytecode"][2:]) + encode(types, values))
    return receipt["contractAddress"].lower()


def rpc_op(op) -> dict:
    return format_user_operation(op)


async def estimate_and_sign(rpc, anvil, acct, ep, call_data, **changes):
    """What a client does: estimate with a dummy signature and zero gas, fill in, sign."""
    unsigned = acct.op(call_data, call_gas_limit=0, verification_gas_limit=0, pre_verification_gas=0, **changes)
    est = await rpc.call("eth_estimateUserOperationGas", rpc_op(unsigned), ep.address)
    op = unsigned.with_changes(
        call_gas_limit=int(est["callGasLimit"], 16),
        verification_gas_limit=int(est["verificationGasLimit"], 16),
        pre_verification_gas=int(est["preVerificationGas"], 16),
    )
    return acct.sign(op, anvil.chain_id), est


@pytest.mark.parametrize("ep", ALL_EPS)
async def test_deploy_and_two_ops_are_mined(rpc, anvil, clean_bundler, ep):
    acct = new_account(anvil, ep, deployed=False)
    target = "0x" + os.urandom(20).hex()
    for i in range(2):
        op, est = await estimate_and_sign(rpc, anvil, acct, ep, acct.execute(target, 1000))
        assert (op.factory is not None) == (i == 0)
        op_hash = await rpc.call("eth_sendUserOperation", rpc_op(op), ep.address)
        assert op_hash == "0x" + ep.user_op_hash(op, anvil.chain_id).hex()

        pending = await rpc.call("eth_getUserOperationByHash", op_hash)
        assert pending["blockNumber"] is None and pending["transactionHash"] is None
        assert decode_user_operation(pending["userOperation"]) == op
        assert pending["entryPoint"].lower() == ep.address
        assert await rpc.call("eth_getUserOperationReceipt", op_hash) is None
        assert await rpc.call("debug_bundler_dumpMempool", ep.address) == [rpc_op(op)]

        tx_hash = await rpc.call("debug_bundler_sendBundleNow")
        receipt = await rpc.call("eth_getUserOperationReceipt", op_hash)
        assert receipt["success"] is True
        assert receipt["userOpHash"] == op_hash
        assert receipt["sender"].lower() == acct.address
        assert receipt["receipt"]["transactionHash"] == tx_hash
        assert int(receipt["actualGasCost"], 16) > 0 and int(receipt["actualGasUsed"], 16) > 0
        assert receipt["nonce"] == hex(op.nonce)
        mined = await rpc.call("eth_getUserOperationByHash", op_hash)
        assert mined["transactionHash"] == tx_hash and mined["blockNumber"] is not None
        assert await rpc.call("debug_bundler_dumpMempool", ep.address) == []
    assert balance(anvil, target) == 2000
    # estimation's limits were enough but not absurd
    assert int(est["verificationGasLimit"], 16) < 500_000
    assert int(est["callGasLimit"], 16) < 200_000


@pytest.mark.parametrize("ep", EPS)
async def test_receipt_of_an_op_another_bundler_mined(rpc, anvil, clean_bundler, ep):
    acct = new_account(anvil, ep)
    target = "0x" + os.urandom(20).hex()
    op = acct.sign(acct.op(acct.execute(target, 7)), anvil.chain_id)
    receipt = send_handle_ops(anvil.url, ep, [op], ANVIL_ACCOUNT0)
    assert receipt["status"] == "0x1"
    op_hash = "0x" + ep.user_op_hash(op, anvil.chain_id).hex()
    got = await rpc.call("eth_getUserOperationReceipt", op_hash)
    assert got["success"] is True and got["receipt"]["transactionHash"] == receipt["transactionHash"]
    by_hash = await rpc.call("eth_getUserOperationByHash", op_hash)
    assert decode_user_operation(by_hash["userOperation"]) == op
    assert by_hash["transactionHash"] == receipt["transactionHash"]


async def test_receipt_logs_are_this_ops_only(rpc, anvil, clean_bundler):
    """Two ops in one bundle: each receipt carries its own account's logs only."""
    ep = V07
    accts = [new_account(anvil, ep) for _ in range(2)]
    hashes = []
    for a in accts:
        op = a.sign(a.op(a.execute("0x" + os.urandom(20).hex(), 1)), anvil.chain_id)
        hashes.append(await rpc.call("eth_sendUserOperation", rpc_op(op), ep.address))
    await rpc.call("debug_bundler_sendBundleNow")
    receipts = [await rpc.call("eth_getUserOperationReceipt", h) for h in hashes]
    assert receipts[0]["receipt"]["transactionHash"] == receipts[1]["receipt"]["transactionHash"]
    for a, r in zip(accts, receipts):
        emitters = {log["address"].lower() for log in r["logs"]}
        assert ep.address not in emitters
        other = next(x for x in accts if x is not a)
        assert other.address not in emitters


@pytest.mark.parametrize("ep", EPS)
async def test_replacement_needs_ten_percent_more_on_both_fees(rpc, anvil, clean_bundler, ep):
    acct = new_account(anvil, ep)
    first = acct.sign(acct.op(acct.execute(ANVIL_ACCOUNT0, 1)), anvil.chain_id)
    h1 = await rpc.call("eth_sendUserOperation", rpc_op(first), ep.address)
    too_little = acct.sign(first.with_changes(max_fee_per_gas=first.max_fee_per_gas * 105 // 100,
                                              max_priority_fee_per_gas=first.max_priority_fee_per_gas * 2),
                           anvil.chain_id)
    with pytest.raises(RpcError) as e:
        await rpc.call("eth_sendUserOperation", rpc_op(too_little), ep.address)
    assert e.value.code == -32602 and "replacement underpriced" in e.value.message
    enough = acct.sign(first.with_changes(max_fee_per_gas=first.max_fee_per_gas * 110 // 100,
                                          max_priority_fee_per_gas=first.max_priority_fee_per_gas * 110 // 100),
                       anvil.chain_id)
    h2 = await rpc.call("eth_sendUserOperation", rpc_op(enough), ep.address)
    assert await rpc.call("debug_bundler_dumpMempool", ep.address) == [rpc_op(enough)]
    with pytest.raises(RpcError) as e:
        await rpc.call("eth_getUserOperationReceipt", h1)
    assert "replaced" in e.value.message
    await rpc.call("debug_bundler_sendBundleNow")
    assert (await rpc.call("eth_getUserOperationReceipt", h2))["success"] is True


async def test_a_queued_op_can_be_replaced(rpc, anvil, clean_bundler):
    """A replacement of an op queued behind its sender's pending op is validated on top of it
    (it used to be validated against the chain alone and refused with AA25)."""
    ep = V07
    acct = new_account(anvil, ep)
    start = acct.nonce()
    first = acct.sign(acct.op(acct.execute(ANVIL_ACCOUNT0, 1), nonce=start), anvil.chain_id)
    queued = acct.sign(acct.op(acct.execute(ANVIL_ACCOUNT0, 1), nonce=start + 1), anvil.chain_id)
    await rpc.call("eth_sendUserOperation", rpc_op(first), ep.address)
    h_queued = await rpc.call("eth_sendUserOperation", rpc_op(queued), ep.address)
    bumped = acct.sign(queued.with_changes(max_fee_per_gas=queued.max_fee_per_gas * 2,
                                           max_priority_fee_per_gas=queued.max_priority_fee_per_gas * 2), anvil.chain_id)
    h_bumped = await rpc.call("eth_sendUserOperation", rpc_op(bumped), ep.address)
    await rpc.call("debug_bundler_sendBundleNow")
    assert (await rpc.call("eth_getUserOperationReceipt", h_bumped))["success"] is True
    with pytest.raises(RpcError) as e:
        await rpc.call("eth_getUserOperationReceipt", h_queued)
    assert "replaced" in e.value.message


@pytest.mark.parametrize("ep", EPS)
async def test_four_queued_ops_per_sender_then_refused(rpc, anvil, clean_bundler, ep):
    acct = new_account(anvil, ep)
    start = acct.nonce()
    hashes = []
    for i in range(4):
        op = acct.sign(acct.op(acct.execute(ANVIL_ACCOUNT0, 1), nonce=start + i), anvil.chain_id)
        hashes.append(await rpc.call("eth_sendUserOperation", rpc_op(op), ep.address))
    fifth = acct.sign(acct.op(acct.execute(ANVIL_ACCOUNT0, 1), nonce=start + 4), anvil.chain_id)
    with pytest.raises(RpcError) as e:
        await rpc.call("eth_sendUserOperation", rpc_op(fifth), ep.address)
    assert e.value.code == -32602 and "already has 4" in e.value.message
    await rpc.call("debug_bundler_sendBundleNow")
    for h in hashes:
        assert (await rpc.call("eth_getUserOperationReceipt", h))["success"] is True
    assert acct.nonce() == start + 4


async def test_nonce_gap_is_refused(rpc, anvil, clean_bundler):
    acct = new_account(anvil, V07)
    op = acct.sign(acct.op(acct.execute(ANVIL_ACCOUNT0, 1), nonce=acct.nonce() + 1), anvil.chain_id)
    with pytest.raises(RpcError) as e:
        await rpc.call("eth_sendUserOperation", rpc_op(op), V07.address)
    assert e.value.code == -32500 and "AA25" in e.value.message


@pytest.mark.parametrize("ep", EPS)
async def test_pre_verification_gas_below_calldata_floor(rpc, anvil, clean_bundler, ep):
    acct = new_account(anvil, ep)
    op = acct.sign(acct.op(acct.execute(ANVIL_ACCOUNT0, 1, b"\x01" * 2000), pre_verification_gas=30_000),
                   anvil.chain_id)
    with pytest.raises(RpcError) as e:
        await rpc.call("eth_sendUserOperation", rpc_op(op), ep.address)
    assert e.value.code == -32602 and "preVerificationGas" in e.value.message
    assert "EIP-7623" in e.value.message


@pytest.mark.parametrize("ep", EPS)
async def test_bad_signature(rpc, anvil, clean_bundler, ep):
    acct = new_account(anvil, ep)
    op = acct.sign(acct.op(acct.execute(ANVIL_ACCOUNT0, 1)), anvil.chain_id, key="0x" + "42" * 32)
    with pytest.raises(RpcError) as e:
        await rpc.call("eth_sendUserOperation", rpc_op(op), ep.address)
    assert e.value.code == -32507


@pytest.mark.parametrize("ep", EPS)
async def test_signed_for_another_chain(rpc, anvil, clean_bundler, ep):
    acct = new_account(anvil, ep)
    op = acct.sign(acct.op(acct.execute(ANVIL_ACCOUNT0, 1)), anvil.chain_id + 1)
    with pytest.raises(RpcError) as e:
        await rpc.call("eth_sendUserOperation", rpc_op(op), ep.address)
    assert e.value.code == -32507


@pytest.mark.parametrize("ep", EPS)
async def test_unfunded_account(rpc, anvil, clean_bundler, ep):
    acct = new_account(anvil, ep, funded=0)
    op = acct.sign(acct.op(acct.execute(ANVIL_ACCOUNT0, 1)), anvil.chain_id)
    with pytest.raises(RpcError) as e:
        await rpc.call("eth_sendUserOperation", rpc_op(op), ep.address)
    assert e.value.code == -32500 and "AA21" in e.value.message


def test_account_op(anvil, ep, test_account, signature: bytes, **changes):
    from bundler.userop import UserOperation

    nonce_data = keccak(b"getNonce(address,uint192)")[:4] + encode(["address", "uint192"], [test_account, 0])
    nonce = int(node_rpc(anvil.url, "eth_call", [{"to": ep.address, "data": "0x" + nonce_data.hex()}, "latest"]), 16)
    values = dict(sender=test_account, nonce=nonce, call_data=b"", call_gas_limit=100_000,
                  verification_gas_limit=300_000, pre_verification_gas=60_000, max_fee_per_gas=2 * 10**9,
                  max_priority_fee_per_gas=10**9, signature=signature)
    values.update(changes)
    return UserOperation(**values)


test_account_op.__test__ = False


@pytest.fixture(scope="module")
def test_accounts(anvil):
    out = {}
    for ep in (V07, V08):
        address = deploy(anvil, "TestAccount", ("address", ep.address))
        node_rpc(anvil.url, "anvil_setBalance", [address, hex(10**18)])
        out[ep.version] = address
    mine(anvil.url)
    return out


@pytest.mark.parametrize("ep", EPS)
async def test_revert_reason_in_validation(rpc, anvil, clean_bundler, test_accounts, ep):
    op = test_account_op(anvil, ep, test_accounts[ep.version], b"\x01" + b"no session for you")
    with pytest.raises(RpcError) as e:
        await rpc.call("eth_sendUserOperation", rpc_op(op), ep.address)
    assert e.value.code == -32500
    assert "AA23 reverted" in e.value.message and "no session for you" in e.value.message


@pytest.mark.parametrize("ep", EPS)
async def test_outside_time_range(rpc, anvil, clean_bundler, test_accounts, ep):
    now = int(node_rpc(anvil.url, "eth_getBlockByNumber", ["latest", False])["timestamp"], 16)
    expired = b"\x03" + (0).to_bytes(6, "big") + (now - 10).to_bytes(6, "big")
    future = b"\x03" + (now + 3600).to_bytes(6, "big") + (now + 7200).to_bytes(6, "big")
    for sig in (expired, future):
        op = test_account_op(anvil, ep, test_accounts[ep.version], sig)
        with pytest.raises(RpcError) as e:
            await rpc.call("eth_sendUserOperation", rpc_op(op), ep.address)
        assert e.value.code == -32503
    ok = b"\x03" + (now - 10).to_bytes(6, "big") + (now + 3600).to_bytes(6, "big")
    op = test_account_op(anvil, ep, test_accounts[ep.version], ok)
    assert await rpc.call("eth_sendUserOperation", rpc_op(op), ep.address)


@pytest.mark.parametrize("ep", EPS)
async def test_paymaster_errors(rpc, anvil, clean_bundler, test_accounts, ep):
    paymaster = deploy(anvil, "TestPaymaster", ("address", ep.address))
    account = test_accounts[ep.version]
    pm = dict(paymaster=paymaster, paymaster_verification_gas_limit=100_000, paymaster_post_op_gas_limit=10_000)
    op = test_account_op(anvil, ep, account, b"", **pm)
    with pytest.raises(RpcError) as e:
        await rpc.call("eth_sendUserOperation", rpc_op(op), ep.address)
    assert e.value.code == -32508 and "too low" in e.value.message

    send_tx(anvil.url, ANVIL_ACCOUNT0, paymaster, keccak(b"deposit()")[:4], value=10**18)
    op = test_account_op(anvil, ep, account, b"", paymaster_data=b"\x01" + b"sponsor says no", **pm)
    with pytest.raises(RpcError) as e:
        await rpc.call("eth_sendUserOperation", rpc_op(op), ep.address)
    assert e.value.code == -32501 and "sponsor says no" in e.value.message

    now = int(node_rpc(anvil.url, "eth_getBlockByNumber", ["latest", False])["timestamp"], 16)
    expired = b"\x03" + (0).to_bytes(6, "big") + (now - 10).to_bytes(6, "big")
    op = test_account_op(anvil, ep, account, b"", paymaster_data=expired, **pm)
    with pytest.raises(RpcError) as e:
        await rpc.call("eth_sendUserOperation", rpc_op(op), ep.address)
    assert e.value.code == -32503 and "paymaster" in e.value.message

    op = test_account_op(anvil, ep, account, b"", **pm)
    op_hash = await rpc.call("eth_sendUserOperation", rpc_op(op), ep.address)
    await rpc.call("debug_bundler_sendBundleNow")
    receipt = await rpc.call("eth_getUserOperationReceipt", op_hash)
    assert receipt["success"] is True and receipt["paymaster"].lower() == paymaster


@pytest.mark.parametrize("ep", EPS)
async def test_estimation_reports_execution_revert(rpc, anvil, clean_bundler, test_accounts, ep):
    account = test_accounts[ep.version]
    fail = keccak(b"fail(string)")[:4] + encode(["string"], ["boom in execution"])
    call = keccak(b"execute(address,uint256,bytes)")[:4] + encode(["address", "uint256", "bytes"], [account, 0, fail])
    op = test_account_op(anvil, ep, account, b"", call_data=call)
    with pytest.raises(RpcError) as e:
        await rpc.call("eth_estimateUserOperationGas", rpc_op(op), ep.address)
    assert e.value.code == -32521 and "boom in execution" in e.value.message


@pytest.mark.parametrize("ep", EPS)
async def test_estimation_with_state_override(rpc, anvil, clean_bundler, ep):
    """An account with no ETH estimates fine when the override gives it some."""
    acct = new_account(anvil, ep, deployed=False, funded=0)
    unsigned = acct.op(acct.execute(ANVIL_ACCOUNT0, 10**17), call_gas_limit=0, verification_gas_limit=0,
                       pre_verification_gas=0)
    with pytest.raises(RpcError) as e:
        await rpc.call("eth_estimateUserOperationGas", rpc_op(unsigned), ep.address)
    assert e.value.code == -32521
    est = await rpc.call("eth_estimateUserOperationGas", rpc_op(unsigned), ep.address,
                         {acct.address: {"balance": hex(10**18)}})
    assert int(est["callGasLimit"], 16) > 0
    with pytest.raises(RpcError) as e:
        await rpc.call("eth_estimateUserOperationGas", rpc_op(unsigned), ep.address, {"0x12": {}})
    assert e.value.code == -32602


@pytest.mark.parametrize("ep", EPS)
async def test_estimated_call_gas_is_accepted_by_admission(rpc, anvil, clean_bundler, ep):
    """A cheap call (no value, to an empty account) measures below the least callGasLimit
    admission takes; the estimate must still be sendable as is."""
    acct = new_account(anvil, ep)
    unsigned = acct.op(acct.execute("0x" + "ab" * 20, 0, b""), call_gas_limit=0, verification_gas_limit=0,
                       pre_verification_gas=0)
    est = await rpc.call("eth_estimateUserOperationGas", rpc_op(unsigned), ep.address)
    op = acct.sign(unsigned.with_changes(call_gas_limit=int(est["callGasLimit"], 16),
                                         verification_gas_limit=int(est["verificationGasLimit"], 16),
                                         pre_verification_gas=int(est["preVerificationGas"], 16)), anvil.chain_id)
    assert await rpc.call("eth_sendUserOperation", rpc_op(op), ep.address)


@pytest.mark.parametrize("ep", EPS)
async def test_op_failing_at_bundle_time_is_dropped_with_reason(rpc, anvil, clean_bundler, ep):
    acct = new_account(anvil, ep)
    op = acct.sign(acct.op(acct.execute(ANVIL_ACCOUNT0, 1)), anvil.chain_id)
    op_hash = await rpc.call("eth_sendUserOperation", rpc_op(op), ep.address)
    node_rpc(anvil.url, "anvil_setBalance", [acct.address, "0x0"])  # cannot prefund any more
    mine(anvil.url)
    assert await rpc.call("debug_bundler_sendBundleNow") == "ok"  # nothing left to send
    with pytest.raises(RpcError) as e:
        await rpc.call("eth_getUserOperationReceipt", op_hash)
    assert e.value.code == -32500 and "AA21" in e.value.message and "dropped" in e.value.message
    assert await rpc.call("debug_bundler_dumpMempool", ep.address) == []


@pytest.mark.parametrize("ep", EPS)
async def test_bundle_failing_outside_any_op_drops_the_culprit(rpc, anvil, clean_bundler, ep):
    """An account whose code vanished after admission makes handleOps fail without naming an
    op in v0.7; the builder finds the culprit alone and still mines the healthy op."""
    healthy, broken = new_account(anvil, ep), new_account(anvil, ep)
    h_ok = await rpc.call("eth_sendUserOperation",
                          rpc_op(healthy.sign(healthy.op(healthy.execute(ANVIL_ACCOUNT0, 1)), anvil.chain_id)),
                          ep.address)
    h_bad = await rpc.call("eth_sendUserOperation",
                           rpc_op(broken.sign(broken.op(broken.execute(ANVIL_ACCOUNT0, 1)), anvil.chain_id)),
                           ep.address)
    node_rpc(anvil.url, "anvil_setCode", [broken.address, "0x"])
    mine(anvil.url)
    await rpc.call("debug_bundler_sendBundleNow")
    assert (await rpc.call("eth_getUserOperationReceipt", h_ok))["success"] is True
    with pytest.raises(RpcError) as e:
        await rpc.call("eth_getUserOperationReceipt", h_bad)
    assert "dropped" in e.value.message
    assert await rpc.call("debug_bundler_dumpMempool", ep.address) == []


async def test_executor_key_used_elsewhere_meanwhile(rpc, anvil, clean_bundler):
    """Someone else spends the executor's nonce (an operator's manual transaction): the next
    bundle refreshes the nonce from the node instead of failing."""
    from eth_account import Account

    from conftest import EXECUTOR_KEY

    acct = new_account(anvil, V07)
    op = acct.sign(acct.op(acct.execute(ANVIL_ACCOUNT0, 1)), anvil.chain_id)
    await rpc.call("eth_sendUserOperation", rpc_op(op), V07.address)
    await rpc.call("debug_bundler_sendBundleNow")  # the bundler now caches its next nonce
    executor = Account.from_key(EXECUTOR_KEY)
    nonce = int(node_rpc(anvil.url, "eth_getTransactionCount", [executor.address, "pending"]), 16)
    manual = executor.sign_transaction({"type": 2, "chainId": anvil.chain_id, "nonce": nonce, "to": executor.address,
                                        "value": 0, "gas": 21_000, "maxFeePerGas": 10**10,
                                        "maxPriorityFeePerGas": 10**9})
    node_rpc(anvil.url, "eth_sendRawTransaction", ["0x" + bytes(manual.raw_transaction).hex()])
    op2 = acct.sign(acct.op(acct.execute(ANVIL_ACCOUNT0, 1)), anvil.chain_id)
    h2 = await rpc.call("eth_sendUserOperation", rpc_op(op2), V07.address)
    await rpc.call("debug_bundler_sendBundleNow")
    assert (await rpc.call("eth_getUserOperationReceipt", h2))["success"] is True
