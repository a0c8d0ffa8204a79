"""EIP-7702 UserOperations on EntryPoint v0.8 and v0.9 through the real RPC: a fresh EOA delegates
to the version's Simple7702Account with the op's eip7702Auth, the bundle goes out as a type-4 transaction
carrying the authorization, and every malformed authorization is refused with -32602 naming the
field."""
from __future__ import annotations

import os

import pytest
from eth_account import Account

from bundler.devchain.anvil import rpc as node_rpc
from bundler.entrypoint import V07, V08, V09
from bundler.pool.eip7702 import SECP256K1_N, authorization_hash, delegate_of, recover_authority
from bundler.userop import EIP7702_FACTORY, Authorization, UserOperation, format_user_operation
from conftest import RpcError
from helpers.accounts import SimpleAccountHelper, mine
from helpers.entities import deploy_bytecode, ep_nonce

@pytest.fixture(scope="module", params=[V08, V09], ids=["v0.8", "v0.9"])
def ep(request):
    return request.param


@pytest.fixture(scope="module")
def delegate(anvil, ep) -> str:
    """The version's own Simple7702Account: v0.8's has the EntryPoint as a constant, v0.9's
    (rc.1) takes it in its constructor; the dev chain deploys that one (devchain/deploy.py)."""
    if ep.version == "0.9":
        return anvil.deployment.simple_7702_accounts[ep.version].lower()
    return deploy_bytecode(anvil.url, bytes.fromhex(ep.artifact("Simple7702Account")["bytecode"][2:]))


def new_eoa(anvil, balance: int = 10**18):
    acct = Account.create()
    node_rpc(anvil.url, "anvil_setBalance", [acct.address, hex(balance)])
    mine(anvil.url)
    return acct


def tx_nonce(anvil, address: str) -> int:
    return int(node_rpc(anvil.url, "eth_getTransactionCount", [address, "latest"]), 16)


def sign_auth(key, chain_id: int, address: str, nonce: int) -> Authorization:
    signed = Account.sign_authorization({"chainId": chain_id, "address": address, "nonce": nonce}, key)
    return Authorization(chain_id=signed.chain_id, address=address.lower(), nonce=signed.nonce,
                         y_parity=signed.y_parity, r=signed.r, s=signed.s)


def op_for(ep, anvil, eoa, call_data: bytes, *, auth: Authorization | None, factory: str | None = EIP7702_FACTORY,
           delegate: str | None = None, nonce: int | None = None, key=None) -> UserOperation:
    op = UserOperation(
        sender=eoa.address.lower(), nonce=ep_nonce(anvil.url, ep, eoa.address) if nonce is None else nonce,
        call_data=call_data, call_gas_limit=100_000, verification_gas_limit=200_000, pre_verification_gas=80_000,
        max_fee_per_gas=2 * 10**9, max_priority_fee_per_gas=10**9, signature=b"",
        factory=factory, eip7702_auth=auth,
    )
    h = ep.user_op_hash(op, anvil.chain_id, (auth.address if auth else delegate) if factory else None)
    return op.with_changes(signature=bytes(Account.unsafe_sign_hash(h, key or eoa.key).signature))


async def send(rpc, op, entry_point) -> str:
    return await rpc.call("eth_sendUserOperation", format_user_operation(op), entry_point.address)


async def refused(rpc, op, entry_point) -> RpcError:
    with pytest.raises(RpcError) as e:
        await send(rpc, op, entry_point)
    return e.value


def balance(anvil, address: str) -> int:
    return int(node_rpc(anvil.url, "eth_getBalance", [address, "latest"]), 16)


def code(anvil, address: str) -> bytes:
    return bytes.fromhex(node_rpc(anvil.url, "eth_getCode", [address, "latest"])[2:])


def test_authorization_hash_and_recovery():
    key = Account.create()
    signed = Account.sign_authorization({"chainId": 1337, "address": "0x" + "11" * 20, "nonce": 7}, key.key)
    assert authorization_hash(1337, "0x" + "11" * 20, 7) == bytes(signed.authorization_hash)
    auth = Authorization(1337, "0x" + "11" * 20, 7, signed.y_parity, signed.r, signed.s)
    assert recover_authority(auth) == key.address.lower()
    high_s = Authorization(1337, "0x" + "11" * 20, 7, 1 - signed.y_parity, signed.r, SECP256K1_N - signed.s)
    assert recover_authority(high_s) is None
    assert delegate_of(b"\xef\x01\x00" + b"\x22" * 20) == "0x" + "22" * 20
    assert delegate_of(b"\x60\x00") is None and delegate_of(b"") is None


@pytest.mark.parametrize("chain", ["this", "any"])
async def test_eoa_delegates_through_the_bundle(rpc, anvil, clean_bundler, delegate, ep, chain):
    eoa = new_eoa(anvil)
    target = "0x" + os.urandom(20).hex()
    call = SimpleAccountHelper.execute(target, 1234)
    auth = sign_auth(eoa.key, anvil.chain_id if chain == "this" else 0, delegate, tx_nonce(anvil, eoa.address))
    op = op_for(ep, anvil, eoa, call, auth=auth)

    op_hash = await send(rpc, op, ep)
    assert op_hash == "0x" + ep.user_op_hash(op, anvil.chain_id, delegate).hex()
    assert await rpc.call("debug_bundler_dumpMempool", ep.address) == [format_user_operation(op)]
    tx_hash = await rpc.call("debug_bundler_sendBundleNow")
    receipt = await rpc.call("eth_getUserOperationReceipt", op_hash)
    assert receipt["success"] is True and receipt["receipt"]["transactionHash"] == tx_hash
    tx = node_rpc(anvil.url, "eth_getTransactionByHash", [tx_hash])
    assert tx["type"] == "0x4" and len(tx["authorizationList"]) == 1
    assert tx["authorizationList"][0]["address"].lower() == delegate
    assert code(anvil, eoa.address) == b"\xef\x01\x00" + bytes.fromhex(delegate[2:])
    assert balance(anvil, target) == 1234

    # delegated now: factory 0x7702 without an authorization, then a plain op
    op2 = op_for(ep, anvil, eoa, SimpleAccountHelper.execute(target, 1), auth=None, delegate=delegate)
    h2 = await send(rpc, op2, ep)
    assert h2 == "0x" + ep.user_op_hash(op2, anvil.chain_id, delegate).hex()
    tx2 = await rpc.call("debug_bundler_sendBundleNow")
    assert node_rpc(anvil.url, "eth_getTransactionByHash", [tx2])["type"] == "0x2"
    assert (await rpc.call("eth_getUserOperationReceipt", h2))["success"] is True
    op3 = op_for(ep, anvil, eoa, SimpleAccountHelper.execute(target, 1), auth=None, factory=None)
    h3 = await send(rpc, op3, ep)
    await rpc.call("debug_bundler_sendBundleNow")
    assert (await rpc.call("eth_getUserOperationReceipt", h3))["success"] is True
    assert balance(anvil, target) == 1236


async def test_one_authorization_per_sender_and_bundle(rpc, anvil, clean_bundler, delegate, ep):
    eoa = new_eoa(anvil)
    auth = sign_auth(eoa.key, anvil.chain_id, delegate, tx_nonce(anvil, eoa.address))
    first = op_for(ep, anvil, eoa, b"", auth=auth)
    second = op_for(ep, anvil, eoa, b"", auth=auth, nonce=first.nonce + 1)
    h1 = await send(rpc, first, ep)
    h2 = await send(rpc, second, ep)
    tx1 = await rpc.call("debug_bundler_sendBundleNow")
    r1 = await rpc.call("eth_getUserOperationReceipt", h1)
    assert r1["success"] is True and r1["receipt"]["transactionHash"] == tx1
    assert await rpc.call("eth_getUserOperationReceipt", h2) is None
    # the second op's authorization is stale now, but the delegation it asks for is in place:
    # it goes without the tuple
    tx2 = await rpc.call("debug_bundler_sendBundleNow")
    assert (await rpc.call("eth_getUserOperationReceipt", h2))["success"] is True
    assert node_rpc(anvil.url, "eth_getTransactionByHash", [tx2])["type"] == "0x2"


async def test_bad_authorizations(rpc, anvil, clean_bundler, delegate, ep):
    eoa = new_eoa(anvil)
    nonce = tx_nonce(anvil, eoa.address)

    err = await refused(rpc, op_for(ep, anvil, eoa, b"", auth=sign_auth(eoa.key, 1234, delegate, nonce)), ep)
    assert err.code == -32602 and "eip7702Auth.chainId" in err.message

    # a wrong nonce is no bad parameter: the chain skips the tuple, the EntryPoint rejects the op
    for wrong in (nonce + 1, nonce + 5):
        err = await refused(rpc, op_for(ep, anvil, eoa, b"", auth=sign_auth(eoa.key, anvil.chain_id, delegate, wrong)), ep)
        assert err.code == -32500 and "eip7702Auth.nonce" in err.message, err.message
        assert err.data["expected"] == hex(nonce)
    # a signer that is not the sender stays -32602 (as does the wrong chain id above)

    other = Account.create()
    err = await refused(rpc, op_for(ep, anvil, eoa, b"", auth=sign_auth(other.key, anvil.chain_id, delegate, nonce)), ep)
    assert err.code == -32602 and "eip7702Auth signer" in err.message and "is not the sender" in err.message
    assert other.address in err.message

    good = sign_auth(eoa.key, anvil.chain_id, delegate, nonce)
    high_s = Authorization(good.chain_id, good.address, good.nonce, 1 - good.y_parity, good.r, SECP256K1_N - good.s)
    err = await refused(rpc, op_for(ep, anvil, eoa, b"", auth=high_s), ep)
    assert err.code == -32602 and "eip7702Auth.s" in err.message

    bad_parity = Authorization(good.chain_id, good.address, good.nonce, 2, good.r, good.s)
    err = await refused(rpc, op_for(ep, anvil, eoa, b"", auth=bad_parity), ep)
    assert err.code == -32602 and "eip7702Auth.yParity" in err.message

    # factory 0x7702 without an authorization, and the EOA has no delegation
    err = await refused(rpc, op_for(ep, anvil, eoa, b"", auth=None, delegate=delegate), ep)
    assert err.code == -32602 and "eip7702Auth" in err.message and "no EIP-7702 delegation" in err.message

    # an address with contract code (not a delegation) cannot be delegated
    with_code = new_eoa(anvil)
    node_rpc(anvil.url, "anvil_setCode", [with_code.address, "0x602a60005260206000f3"])
    mine(anvil.url)
    err = await refused(rpc, op_for(ep, anvil, with_code, b"", auth=sign_auth(with_code.key, anvil.chain_id, delegate, 0)), ep)
    assert err.code == -32602 and "has contract code" in err.message
    # EntryPoint v0.7 has no EIP-7702 support
    err = await refused(rpc, op_for(ep, anvil, eoa, b"", auth=good), V07)
    assert err.code == -32602 and "v0.8" in err.message

    # nothing entered the mempool, and the good authorization still works
    assert await rpc.call("debug_bundler_dumpMempool", ep.address) == []
    h = await send(rpc, op_for(ep, anvil, eoa, b"", auth=good), ep)
    await rpc.call("debug_bundler_sendBundleNow")
    assert (await rpc.call("eth_getUserOperationReceipt", h))["success"] is True


async def test_authorization_gone_stale_before_the_bundle(rpc, anvil, clean_bundler, delegate, ep):
    """The EOA sends a transaction of its own after the op was accepted: the tuple's nonce no
    longer matches and the delegation is not in place, so the op is dropped at bundle time."""
    eoa = new_eoa(anvil)
    h = await send(rpc, op_for(ep, anvil, eoa, b"", auth=sign_auth(eoa.key, anvil.chain_id, delegate,
                                                                tx_nonce(anvil, eoa.address))), ep)
    node_rpc(anvil.url, "anvil_setNonce", [eoa.address, hex(tx_nonce(anvil, eoa.address) + 1)])
    mine(anvil.url)
    assert await rpc.call("debug_bundler_sendBundleNow") == "ok"
    with pytest.raises(RpcError) as e:
        await rpc.call("eth_getUserOperationReceipt", h)
    assert e.value.code == -32602 and "eip7702Auth" in e.value.message and "stale" in e.value.message
    assert code(anvil, eoa.address) == b""
